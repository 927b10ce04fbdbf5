"""Bayes-by-Backprop training and Gaussian Monte-Carlo prediction (the float reference).

The loss is the per-example negative ELBO of Blundell et al. (2015):
cross-entropy + kl_weight * KL(q || p) / n_train, with one weight sample per mini-batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Config
from .networks import BayesNet
from .progress import progress as progress_bar

__all__ = ["batches", "bbb_predict", "random_shift", "set_seed", "train_bbb"]


def set_seed(seed: int) -> torch.Generator:
    """Seed torch's global generator (weight sampling in training) and return a private one."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Index tensors of mini-batches over ``range(n)``, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of x (B, C, H, W) translated by its own (dy, dx) in -shift..shift, zero fill.

    The offsets are drawn from ``generator`` (2 B integers); shift 0 returns x unchanged and
    draws nothing.
    """
    if shift == 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"random shifts need images (B, C, H, W), not shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy, dx = torch.randint(0, 2 * shift + 1, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows, cols]


def train_bbb(model: BayesNet, x: torch.Tensor, y: torch.Tensor, cfg: Config, *,
              progress: bool = True) -> list[dict[str, float]]:
    """Train ``model`` in place on (x, y); returns one record of losses per epoch.

    Deterministic for a given ``cfg.seed`` (CPU); ``cfg.augment_shift`` > 0 translates each
    training image at random (:func:`random_shift`, its own generator, so the batches are
    those of an unaugmented run). x: (n, *image_shape) images in [0, 1],
    y: (n,) int labels in 0..C-1, n >= 2 (BatchNorm needs two examples per batch).
    """
    _check_training_set(model, x, y)
    gen = set_seed(cfg.seed)
    shift_gen = torch.Generator().manual_seed(cfg.seed + 1)  # apart from the shuffling
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    n = len(x)
    history = []
    bar = progress_bar(range(cfg.epochs), desc="train BBB", unit="epoch", enabled=progress)
    for epoch in bar:
        model.train()
        model.set_sampling(True)
        tot_nll = tot_kl = correct = 0.0
        for idx in batches(n, cfg.batch_size, gen):
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            logits = model(random_shift(x[idx], cfg.augment_shift, shift_gen))
            nll = F.cross_entropy(logits, y[idx])
            kl = model.kl() / n
            loss = nll + cfg.kl_weight * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_nll += nll.item() * len(idx)
            tot_kl += kl.item() * len(idx)
            correct += (logits.argmax(1) == y[idx]).sum().item()
        sched.step()
        rec = {"epoch": epoch + 1, "nll": tot_nll / n, "kl": tot_kl / n,
               "train_acc": 100.0 * correct / n}
        history.append(rec)
        bar.set_postfix(nll=f"{rec['nll']:.3f}", kl=f"{rec['kl']:.3f}",
                        acc=f"{rec['train_acc']:.1f}")
    model.eval()
    return history


def _check_training_set(model: BayesNet, x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor) or y.dim() != 1:
        raise ValueError(f"y must be a 1-D tensor of labels, not shape "
                         f"{tuple(getattr(y, 'shape', ()))}")
    if isinstance(x, torch.Tensor) and len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} images but {len(y)} labels")
    if len(y) < 2:
        raise ValueError(f"the training set must hold at least 2 images (BatchNorm needs two "
                         f"per batch), not {len(y)}")
    model.check_input(x)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"y must hold integer class labels, not {y.dtype}")
    lo, hi, c = int(y.min()), int(y.max()), model.num_classes
    if lo < 0 or hi >= c:
        raise ValueError(f"labels must lie in 0..{c - 1} (the network has {c} outputs), "
                         f"got {lo}..{hi}")


@torch.no_grad()
def bbb_predict(model: BayesNet, x: torch.Tensor, T: int, *,
                generator: torch.Generator | None = None, batch_size: int = 1024,
                progress: bool = False, desc: str = "BBB (float)") -> torch.Tensor:
    """Per-pass softmax probabilities (B, T, C) of full-precision Gaussian MC (eq. 2).

    Each pass draws one weight sample per layer from q, shared by every image of x, in pass
    order (the T samples of one call consume ``generator`` as a single batch would). The
    images run in batches of ``batch_size``; the sample of pass t is drawn again for each
    batch from the generator state saved at the start of that pass, so memory holds one
    sample, not T, and the result does not depend on ``batch_size``.
    x: (B, *image_shape) images in [0, 1] (see :meth:`BayesNet.check_input`).
    """
    from .layers import bayes_layers

    for name, v in (("T", T), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    model.check_input(x)
    model.eval()
    layers = bayes_layers(model)
    gen = generator if generator is not None else torch.default_generator
    states = []
    for _ in range(T):   # the state at the start of each pass, then past its draws
        states.append(gen.get_state())
        for layer in layers:
            layer.sample_weight(gen)
    replay = torch.Generator()
    out = []
    for start in progress_bar(range(0, len(x), batch_size), desc=desc, unit="batch",
                              enabled=progress, leave=False):
        xb = model.prepare_input(x[start:start + batch_size])
        passes = []
        for state in states:
            replay.set_state(state)
            h = xb
            for stage, layer in zip(model.stages, layers):
                h = stage.post(stage.weight(h, layer.sample_weight(replay)))
            passes.append(F.softmax(h, dim=-1))
        out.append(torch.stack(passes, dim=1))
    return torch.cat(out)
