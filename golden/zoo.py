"""The large CNN topologies of the paper's Fig. 7, written out as torch modules (no weights).

torchvision cannot be installed beside this project's torch build, so the architectures
the paper takes from "PyTorch's vision library" are defined here with torchvision's layer
layout, so that their parameter counts equal torchvision's (tests/golden/test_memory.py
checks the published totals: ResNet-18 11,689,512; ResNet-34 21,797,672; VGG-11
132,863,336; VGG-16 138,357,544; MobileNetV2 3,504,872). They exist to be *counted*
(:mod:`spinbayes.golden.memory`); they are randomly initialised and never trained here.

* :class:`ResNet` with :class:`BasicBlock` (He et al. 2016): the ImageNet form (7x7
  stride-2 stem and max-pool) and the CIFAR form (3x3 stride-1 stem, no max-pool).
* :class:`VGG` (Simonyan & Zisserman 2015) in torchvision's layout: ``features``, a 7x7
  adaptive average pool and the 512*7*7 -> 4096 -> 4096 -> classes classifier, with or
  without BatchNorm.
* :func:`vgg_small`: the CIFAR-10 "VGG-Small" of LQ-Nets (Zhang et al., ECCV 2018,
  Microsoft/LQ-Nets ``cifar10-vgg-small.py``): bias-free 3x3 convolutions
  128-128-M-256-256-M-512-512-M, each followed by BatchNorm and ReLU, then one
  Linear(512*4*4, classes). The paper trains a "VGG based on [20]" (Mobiny et al.); their
  published code defines no VGG, so that this is the paper's network is our reading.
* :class:`MobileNetV2` (Sandler et al. 2018) in torchvision's layout, width 1.0.

Build on the meta device (``build(name, device="meta")``) to count without allocating:
VGG-16 alone would take about 550 MB of float32 storage.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ZOO", "BasicBlock", "MobileNetV2", "ResNet", "VGG", "build", "mobilenet_v2",
           "resnet18", "resnet34", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg_small"]

_VGG_CFG = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
}
_STEMS = ("imagenet", "cifar")


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """ResNet of BasicBlocks, ``layers`` blocks per stage (64, 128, 256, 512 channels).

    Parameters
    ----------
    layers : sequence of 4 int
        Blocks per stage: (2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34.
    num_classes : int
        Outputs of the final Linear layer.
    stem : {"imagenet", "cifar"}
        "imagenet": 7x7 stride-2 convolution and 3x3 stride-2 max-pool (torchvision);
        "cifar": 3x3 stride-1 convolution, no max-pool (for 32x32 inputs).
    """

    def __init__(self, layers: tuple[int, ...], num_classes: int = 1000,
                 stem: str = "imagenet"):
        super().__init__()
        _check_classes(num_classes)
        if stem not in _STEMS:
            raise ValueError(f"stem must be one of {_STEMS}, not {stem!r}")
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive integers, not {layers!r}")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        stages, inplanes = [], 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride)]
            stage += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg_features(cfg: list, batch_norm: bool, conv_bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(channels, v, 3, padding=1, bias=conv_bias))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG in torchvision's layout: features, 7x7 adaptive pool, 3-layer classifier.

    Parameters
    ----------
    features : nn.Sequential
        The convolutional part, ending in 512 channels.
    num_classes : int
        Outputs of the last Linear layer.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000):
        super().__init__()
        _check_classes(num_classes)
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _conv_bn_relu(inp: int, oup: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand: int):
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == oup
        layers = [] if expand == 1 else [_conv_bn_relu(inp, hidden, 1)]
        layers += [_conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0, in torchvision's layout (all widths are multiples of 8).

    Parameters
    ----------
    num_classes : int
        Outputs of the final Linear(1280, num_classes).
    """

    #: (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        _check_classes(num_classes)
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        inp = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(_conv_bn_relu(inp, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def resnet18(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2)."""
    return ResNet((2, 2, 2, 2), num_classes, stem)


def resnet34(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3)."""
    return ResNet((3, 4, 6, 3), num_classes, stem)


def vgg11(num_classes: int = 1000) -> VGG:
    """VGG-11 (configuration A), no BatchNorm."""
    return VGG(_vgg_features(_VGG_CFG["A"], False), num_classes)


def vgg11_bn(num_classes: int = 1000) -> VGG:
    """VGG-11 (configuration A) with BatchNorm after every convolution."""
    return VGG(_vgg_features(_VGG_CFG["A"], True), num_classes)


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16 (configuration D), no BatchNorm."""
    return VGG(_vgg_features(_VGG_CFG["D"], False), num_classes)


def vgg16_bn(num_classes: int = 1000) -> VGG:
    """VGG-16 (configuration D) with BatchNorm after every convolution."""
    return VGG(_vgg_features(_VGG_CFG["D"], True), num_classes)


def vgg_small(num_classes: int = 10) -> nn.Sequential:
    """The CIFAR-10 VGG-Small of LQ-Nets for 32x32 inputs (see the module docstring)."""
    _check_classes(num_classes)
    features = _vgg_features([128, 128, "M", 256, 256, "M", 512, 512, "M"], True,
                             conv_bias=False)
    return nn.Sequential(features, nn.Flatten(), nn.Linear(512 * 4 * 4, num_classes))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2, width 1.0."""
    return MobileNetV2(num_classes)


#: Constructors by name; each takes ``num_classes`` (and the ResNets ``stem``).
ZOO: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18, "resnet34": resnet34, "vgg11": vgg11, "vgg11_bn": vgg11_bn,
    "vgg16": vgg16, "vgg16_bn": vgg16_bn, "vgg_small": vgg_small,
    "mobilenet_v2": mobilenet_v2,
}


def build(name: str, device: str | torch.device = "meta", **kwargs) -> nn.Module:
    """The topology ``name`` of :data:`ZOO`, built on ``device`` ("meta": no storage).

    Parameters
    ----------
    name : str
        A key of :data:`ZOO`.
    device : str or torch.device
        Where parameters live; the default "meta" allocates nothing, so that even VGG-16
        (138 M parameters) builds in milliseconds and can only be counted, not run.
    **kwargs
        Passed to the constructor (``num_classes``, ``stem``).
    """
    if name not in ZOO:
        raise ValueError(f"unknown topology {name!r}; choose from {sorted(ZOO)}")
    with torch.device(device):
        return ZOO[name](**kwargs)
