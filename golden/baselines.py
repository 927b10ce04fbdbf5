"""Baselines of the paper's Tables 1 and 3 on the same topology, data and budget (the n-way
study of section 4.4 is in :mod:`spinbayes.golden.nway`, re-exported here).

Every baseline is a *deterministic twin* of the Bayesian network of a :class:`Config`: the
same :class:`~spinbayes.golden.networks.Stage` list (bias-free weight layer -> BatchNorm ->
comparator with straight-through gradient, or ReLU -> [pool] -> [flatten]), the same input
quantisation and the same initial weights (the BBB posterior means drawn from ``cfg.seed``),
with plain weights instead of a Gaussian posterior:

* **MC-Dropout** (Gal & Ghahramani 2016, ref. [9]): element-wise dropout of rate ``p`` on
  the input of every weight layer except the first (the image is not dropped), as in the
  LeNet of Gal's and of Mobiny et al.'s reference code; kept on at test time.
* **MC-DropConnect** (Mobiny et al. 2021, ref. [20]): a Bernoulli mask of drop rate ``p`` on
  the weights of every layer (one mask per forward pass, shared by the images predicted,
  like BBB's one weight sample per pass), rescaled by 1 / (1 - p); kept on at test time.
  Mobiny's code leaves the output layer unmasked and does not rescale; here every layer is
  masked because the paper counts one Bernoulli RNG per parameter (section 3.1), and the
  rescaling is immaterial to MC prediction because BatchNorm follows every layer.
* **Deep Ensemble** (Lakshminarayanan et al. 2017, ref. [15]): M = 5 deterministic twins
  initialised and shuffled with seeds ``cfg.seed + m`` (no adversarial training). Each member
  gets the full budget, so the ensemble costs M times the training compute of one network.
  Its "passes" are the M members (T = M, not ``cfg.T``: a deterministic member run again gives
  the same pass).

Defaults. ``p = 0.2`` for both mask kinds. Mobiny et al.'s MNIST code (hula-ai/mc_dropconnect,
``keep_prob`` 0.5) drops half, on LeNet-5; on the 64 binary comparators of the digits MLP
p = 0.5 costs MC-DropConnect 7 points of test accuracy (91.1 % against 98.3 % at 0.2 and
0.1, default Config), so a milder rate is the default, not a tuned one.
``weight_decay = 5e-4``: the L2 decay of Caffe's reference LeNet solver (Gal & Ghahramani's
MNIST models are Caffe LeNets; Mobiny's MNIST config uses 1e-4). It is the regulariser both
papers tie to the prior, applied to the weight layers only (not BatchNorm).
Budget: ``cfg.epochs``, ``cfg.batch_size``, ``cfg.lr``, Adam with cosine annealing and the
seeding of :func:`~spinbayes.golden.train.train_bbb` (global RNG seeded with the network's
seed for training masks, a private generator for shuffling). Prediction runs in batches and
gives the same probabilities whatever the batch size (:func:`mc_predict`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .datasets import Dataset
from .evaluate import CALIBRATION
from .networks import BayesNet, Stage, build_model
from .nway import nway_markdown, nway_study  # the n-way study of section 4.4, re-exported
from .progress import progress as progress_bar
from .train import batches, set_seed

__all__ = ["BASELINES", "METHODS", "DeterministicNet", "DropConnect", "InputDropout",
           "baseline_probs", "build_deterministic", "deterministic_predict", "ensemble_predict",
           "mc_predict", "nway_markdown", "nway_study", "train_baseline", "train_ensemble"]

#: Network kinds of :func:`build_deterministic`.
METHODS = ("deterministic", "mc_dropout", "mc_dropconnect")
#: Methods of :func:`baseline_probs` and their display names (the ensemble's shows M).
BASELINES = {"mc_dropout": "MC-Dropout", "mc_dropconnect": "MC-DropConnect",
             "ensemble": "Deep Ensemble ({M})", "deterministic": "Deterministic"}
DEFAULT_P = 0.2
DEFAULT_WEIGHT_DECAY = 5e-4
#: MC prediction draws MC-Dropout's input masks per chunk of this many images, each chunk
#: from its own generator, so that the masks do not depend on the batch size (batches hold
#: whole chunks).
MASK_CHUNK = 128


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise ValueError(f"p must lie in [0, 1), not {p!r}")
    return float(p)


def _check_positive(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")


class _Stochastic(nn.Module):
    """A weight layer (``nn.Linear`` / ``nn.Conv2d``, bias-free) with Bernoulli masks.

    Masks are drawn in training mode, or in any mode while ``mc`` is True (MC prediction,
    BatchNorm stays in eval mode), from ``generator`` (None: torch's global generator).
    """

    def __init__(self, layer: nn.Module, p: float):
        super().__init__()
        self.layer, self.p = layer, _check_p(p)
        self.mc = False
        self.generator: torch.Generator | None = None
        # (generator, rows) per image chunk: row-wise masks drawn chunk by chunk
        self.chunks: list[tuple[torch.Generator, int]] | None = None

    @property
    def active(self) -> bool:
        return self.p > 0 and (self.training or self.mc)

    def keep_mask(self, shape: torch.Size) -> torch.Tensor:
        """Bool mask of ``shape``: True (kept) with probability 1 - p."""
        return torch.rand(shape, generator=self.generator) >= self.p

    def _apply_layer(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, w, stride=self.layer.stride, padding=self.layer.padding)
        return F.linear(x, w)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InputDropout(_Stochastic):
    """MC-Dropout: element-wise dropout of the layer's input, (B, ...) -> layer output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active:
            if self.chunks is not None:
                mask = torch.cat([torch.rand((rows, *x.shape[1:]), generator=g) >= self.p
                                  for g, rows in self.chunks])
            else:
                mask = self.keep_mask(x.shape)
            x = x * mask.to(x.dtype) / (1 - self.p)
        return self._apply_layer(x, self.layer.weight)


class DropConnect(_Stochastic):
    """MC-DropConnect: one Bernoulli mask on the weights per forward pass, times 1/(1-p)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.layer.weight
        if self.active:
            w = w * self.keep_mask(w.shape).to(w.dtype) / (1 - self.p)
        return self._apply_layer(x, w)


class DeterministicNet(BayesNet):
    """A BayesNet with plain (maybe masked) weights: (B, 1, H, W) in [0, 1] -> (B, C) logits."""

    def __init__(self, stages: list[Stage], input_bits: int, flatten_input: bool,
                 method: str, p: float):
        super().__init__(stages, input_bits, flatten_input)
        self.method, self.p = method, p

    def stochastic_layers(self) -> list[_Stochastic]:
        return [m for m in self.modules() if isinstance(m, _Stochastic)]


def _plain(weight: nn.Module) -> nn.Module:
    """A bias-free nn.Linear / nn.Conv2d holding the Bayesian layer's posterior mean."""
    mu = weight.weight_mu.detach().clone()
    if mu.dim() == 2:
        layer = nn.Linear(mu.shape[1], mu.shape[0], bias=False)
    else:
        layer = nn.Conv2d(mu.shape[1], mu.shape[0], mu.shape[2], stride=weight.stride,
                          padding=weight.padding, bias=False)
    layer.weight = nn.Parameter(mu)
    return layer


def build_deterministic(cfg: Config, image_shape: tuple[int, int, int], num_classes: int,
                        method: str = "deterministic", *, p: float = DEFAULT_P
                        ) -> DeterministicNet:
    """The deterministic twin of ``build_model(cfg, image_shape, num_classes)``.

    Parameters
    ----------
    cfg, image_shape, num_classes
        As for :func:`~spinbayes.golden.networks.build_model`: topology, activation, input
        bits, initialisation seed ``cfg.seed``; (C, H, W) of an image; number of logits.
    method : str
        ``"deterministic"`` (no masks; ``p`` is ignored), ``"mc_dropout"`` (dropout on the
        input of every weight layer but the first) or ``"mc_dropconnect"`` (masks on every
        layer's weights).
    p : float
        Drop rate in [0, 1).

    Returns
    -------
    DeterministicNet
        Same stages as the Bayesian network, weights initialised to its posterior means.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    p = _check_p(p)
    net = build_model(cfg, image_shape, num_classes)
    for i, stage in enumerate(net.stages):
        layer = _plain(stage.weight)
        if method == "mc_dropout" and i > 0:
            layer = InputDropout(layer, p)
        elif method == "mc_dropconnect":
            layer = DropConnect(layer, p)
        stage.weight = layer
    return DeterministicNet(list(net.stages), net.input_bits, net.flatten_input, method,
                            0.0 if method == "deterministic" else p)


def train_baseline(model: DeterministicNet, x: torch.Tensor, y: torch.Tensor, cfg: Config, *,
                   weight_decay: float = DEFAULT_WEIGHT_DECAY, progress: bool = True
                   ) -> list[dict[str, float]]:
    """Train ``model`` in place on x (n, 1, H, W), y (n,) with the budget of ``train_bbb``.

    Cross-entropy + L2 ``weight_decay`` on the weight layers (Adam's coupled decay); epochs,
    batch size, lr, schedule and seeding as in the module docstring. Deterministic for a given
    ``cfg.seed`` (CPU). Returns one record per epoch: ``epoch``, ``nll``, ``train_acc`` (%).
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
    if torch.isnan(x).any():
        raise ValueError("training images contain NaN")
    if not (isinstance(weight_decay, int | float) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, not {weight_decay!r}")
    gen = set_seed(cfg.seed)
    decay = [s.weight.layer.weight if isinstance(s.weight, _Stochastic) else s.weight.weight
             for s in model.stages]
    rest = [q for q in model.parameters() if all(q is not d for d in decay)]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": float(weight_decay)},
                            {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    n, history = len(x), []
    bar = progress_bar(range(cfg.epochs), desc=f"train {model.method}", unit="epoch",
                       enabled=progress)
    for epoch in bar:
        model.train()
        tot_nll = correct = 0.0
        for idx in batches(n, cfg.batch_size, gen):
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            logits = model(x[idx])
            nll = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            nll.backward()
            opt.step()
            tot_nll += nll.item() * len(idx)
            correct += (logits.argmax(1) == y[idx]).sum().item()
        sched.step()
        history.append({"epoch": epoch + 1, "nll": tot_nll / n, "train_acc": 100.0 * correct / n})
        bar.set_postfix(nll=f"{history[-1]['nll']:.3f}", acc=f"{history[-1]['train_acc']:.1f}")
    model.eval()
    return history


def _passes(model: nn.Module, x: torch.Tensor, T: int, batch_size: int) -> torch.Tensor:
    return torch.cat([torch.stack([F.softmax(model(x[i:i + batch_size]), dim=-1)
                                   for _ in range(T)], dim=1)
                      for i in range(0, len(x), batch_size)])


def _chunk_generators(base: int, first: int, n: int) -> list[tuple[torch.Generator, int]]:
    """The generators of the MASK_CHUNK-image chunks covering images first..first+n-1."""
    out = []
    for c in range(first // MASK_CHUNK, -(-(first + n) // MASK_CHUNK)):
        seed = int(np.random.SeedSequence([base, c]).generate_state(1, np.uint64)[0])
        rows = min(first + n, (c + 1) * MASK_CHUNK) - max(first, c * MASK_CHUNK)
        out.append((torch.Generator().manual_seed(seed), rows))
    return out


@torch.no_grad()
def mc_predict(model: DeterministicNet, x: torch.Tensor, T: int,
               generator: torch.Generator | None = None, *, batch_size: int = 1024,
               progress: bool = False, desc: str = "MC prediction") -> torch.Tensor:
    """Per-pass softmax probabilities (B, T, C) of MC-Dropout / MC-DropConnect on x (B, ...).

    Masks are on while BatchNorm uses its running statistics, which stay untouched.
    DropConnect: one weight mask per layer and pass, shared by every image of x and drawn
    from ``generator`` pass by pass (as one batch would draw them; replayed for each batch
    from the state saved at the start of the pass). MC-Dropout: one input mask per image,
    layer and pass, drawn per chunk of :data:`MASK_CHUNK` images from a generator seeded by
    (one number drawn from ``generator``, the chunk's index). Either way the result does not
    depend on ``batch_size`` (rounded up to whole chunks for MC-Dropout).
    """
    _check_positive("T", T)
    _check_positive("batch_size", batch_size)
    layers = model.stochastic_layers()
    if not layers:
        raise ValueError("mc_predict needs a network with dropout or DropConnect layers; "
                         "use deterministic_predict for a deterministic one")
    model.check_input(x)
    model.eval()
    gen = generator if generator is not None else torch.default_generator
    weight_masks = [m for m in layers if isinstance(m, DropConnect) and m.p > 0]
    row_masks = [m for m in layers if isinstance(m, InputDropout) and m.p > 0]
    states = []
    for _ in range(T if weight_masks else 0):
        states.append(gen.get_state())
        for m in weight_masks:
            torch.rand(m.layer.weight.shape, generator=gen)
    base = int(torch.randint(2 ** 62, (), generator=gen)) if row_masks else 0
    if row_masks:
        batch_size = -(-batch_size // MASK_CHUNK) * MASK_CHUNK
    replay = torch.Generator()
    for m in layers:
        m.mc, m.generator = True, replay
    out = []
    try:
        for i in progress_bar(range(0, len(x), batch_size), desc=desc, unit="batch",
                              enabled=progress, leave=False):
            xb = x[i:i + batch_size]
            chunks = _chunk_generators(base, i, len(xb)) if row_masks else None
            for m in row_masks:
                m.chunks = chunks
            passes = []
            for t in range(T):
                if weight_masks:
                    replay.set_state(states[t])
                passes.append(F.softmax(model(xb), dim=-1))
            out.append(torch.stack(passes, dim=1))
    finally:
        for m in layers:
            m.mc, m.generator, m.chunks = False, None, None
    return torch.cat(out)


@torch.no_grad()
def deterministic_predict(model: nn.Module, x: torch.Tensor, T: int, *,
                          batch_size: int = 1024) -> torch.Tensor:
    """The network in eval mode (masks off) run T times: (B, T, C), T identical passes."""
    _check_positive("T", T)
    model.eval()
    return _passes(model, x, T, batch_size)


@torch.no_grad()
def ensemble_predict(models: list[nn.Module], x: torch.Tensor, *,
                     batch_size: int = 1024) -> torch.Tensor:
    """The members' softmax probabilities as passes: (B, M, C) for M = ``len(models)``."""
    if len(models) < 1:
        raise ValueError("an ensemble needs at least one member")
    return torch.cat([deterministic_predict(m, x, 1, batch_size=batch_size) for m in models],
                     dim=1)


def train_ensemble(cfg: Config, data: Dataset, M: int = 5, *,
                   weight_decay: float = DEFAULT_WEIGHT_DECAY, progress: bool = True
                   ) -> list[DeterministicNet]:
    """M deterministic twins, member m initialised and trained with seed ``cfg.seed + m``.

    Every member gets the full budget (``cfg.epochs`` on all of ``data.x_train``), so the
    ensemble costs M times the training compute of one network.
    """
    _check_positive("M", M)
    members = []
    for m in progress_bar(range(M), desc="deep ensemble", unit="member", enabled=progress):
        c = cfg.replace(seed=cfg.seed + m)
        net = build_deterministic(c, data.image_shape, data.num_classes)
        train_baseline(net, data.x_train, data.y_train, c, weight_decay=weight_decay,
                       progress=False)
        members.append(net)
    return members


def baseline_probs(cfg: Config, data: Dataset, ood_sets: dict[str, torch.Tensor], *,
                   methods: tuple[str, ...] = ("mc_dropout", "mc_dropconnect", "ensemble"),
                   p_dropout: float = DEFAULT_P, p_dropconnect: float = DEFAULT_P,
                   weight_decay: float = DEFAULT_WEIGHT_DECAY, M: int = 5,
                   calibration: torch.Tensor | None = None,
                   progress: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Train every baseline of ``methods`` and predict the test set, every OoD set and the
    ``calibration`` images (in-distribution, for the OoD operating point) when given.

    Parameters
    ----------
    methods : tuple of str
        Keys of :data:`BASELINES`.
    p_dropout, p_dropconnect, weight_decay, M
        See the module docstring for the defaults.
    calibration : torch.Tensor, optional
        Predicted last, under the key :data:`~spinbayes.golden.evaluate.CALIBRATION`.

    Returns
    -------
    dict
        Display name -> {``"test"``: (B, T, C), OoD name: (B', T, C)[, CALIBRATION: ...]},
        in the order of
        ``methods``; T = ``cfg.T`` (MC masks from a generator seeded with ``cfg.seed + 1``,
        like the BBB row of :func:`~spinbayes.golden.evaluate.evaluate`), T = M for the
        ensemble and T = ``cfg.T`` identical passes for ``"deterministic"``.
    """
    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline methods {unknown}; choose from {tuple(BASELINES)}")
    _check_p(p_dropout)
    _check_p(p_dropconnect)
    _check_positive("M", M)
    sets = {"test": data.x_test, **ood_sets}
    if calibration is not None:
        sets[CALIBRATION] = calibration
    out = {}
    for method in methods:
        if method == "ensemble":
            models = train_ensemble(cfg, data, M, weight_decay=weight_decay, progress=progress)
            out[BASELINES[method].format(M=M)] = {k: ensemble_predict(models, x)
                                                  for k, x in sets.items()}
            continue
        p = p_dropout if method == "mc_dropout" else p_dropconnect
        net = build_deterministic(cfg, data.image_shape, data.num_classes, method, p=p)
        train_baseline(net, data.x_train, data.y_train, cfg, weight_decay=weight_decay,
                       progress=progress)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        out[BASELINES[method]] = {
            k: (deterministic_predict(net, x, cfg.T) if method == "deterministic"
                else mc_predict(net, x, cfg.T, gen, progress=progress,
                                desc=f"{BASELINES[method]}: {k}")) for k, x in sets.items()}
    return out
