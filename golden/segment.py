"""Segmentation with pixel-wise uncertainty: train, map, evaluate every method (Table 2, Fig. 6).

For each data set, on the same network (:mod:`.seg_networks`), data, budget and T:

* ``BBB (float)``: Bayes by Backprop, Gaussian MC with one weight sample per layer and pass;
* ``SpinBayes n=k``: the trained posterior mapped onto N crossbars per layer by
  :func:`~spinbayes.golden.approximation.approximate` (eq. 3, Q bits), BatchNorm re-calibrated
  by :func:`~spinbayes.golden.inference.recalibrate_bn`, k-way choices, T passes (eq. 4);
* ``MC-Dropout`` and ``MC-DropConnect``: the deterministic twin of the same network (same
  initial weights) with the masks of :mod:`~spinbayes.golden.baselines`, trained with the same
  epochs, batch size, learning rate and schedule, plus L2 weight decay on the weight layers.

Training loss, per mini-batch: the mean cross-entropy over its labelled pixels, plus for BBB
``kl_weight * KL(q || p) / (n_train * H * W)``: the ELBO of a per-pixel likelihood scaled to
one pixel (each pixel is a likelihood term, as each image is in classification). Seeds
follow :mod:`~spinbayes.golden.evaluate`: training ``cfg.seed``, prediction ``cfg.seed + 1``,
re-calibration ``cfg.seed + 7919 n``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Config
from .approximation import approximate
from .baselines import DEFAULT_P, DEFAULT_WEIGHT_DECAY
from .inference import recalibrate_bn
from .progress import progress as progress_bar
from .seg_data import SegDataset, load_seg_dataset
from .seg_figures import _atomic_write, fig6_png, shared_scale
from .seg_metrics import SegResult, evaluate_seg, table2_markdown
from .seg_networks import (
    SpinBayesSegNet,
    bbb_seg_predict,
    build_seg_model,
    mc_seg_predict,
    seg_twin,
)
from .train import batches, set_seed

__all__ = ["QUICK_CONFIG", "QUICK_SETTINGS", "SEG_CONFIG", "SegSettings", "evaluate_set",
           "run_segment", "train_seg"]

#: Training and evaluation defaults of ``spinbayes segment`` (the rest as in Config).
SEG_CONFIG = Config(epochs=30, batch_size=8, lr=3e-3)
#: Images per BatchNorm re-calibration batch (each holds H*W pixels per channel).
RECAL_BATCH = 32
#: ``--quick``: seconds, for tests.
QUICK_CONFIG = SEG_CONFIG.replace(epochs=2, T=4, N=3, recal_batches=2)


@dataclass(frozen=True)
class SegSettings:
    """What ``spinbayes segment`` runs beyond the :class:`~spinbayes.config.Config`."""

    sources: tuple[str, ...] = ("synthetic-binary", "synthetic-multiclass")
    data_dir: str | None = None
    size: tuple[int, int] = (64, 64)
    n_train: int = 256
    n_test: int = 64
    test_fraction: float = 0.2
    ignore_index: int | None = None
    encoder: str = "small"
    width: int = 8
    pyramid: int = 16
    n_ways: tuple[int, ...] = (1, 2)
    p_dropout: float = DEFAULT_P
    p_dropconnect: float = DEFAULT_P
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    figure_images: int = 4
    baselines: bool = True

    def __post_init__(self):
        for name in ("n_train", "n_test", "width", "pyramid"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not self.sources:
            raise ValueError("sources must name at least one data set")
        if not self.n_ways or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                  for n in self.n_ways):
            raise ValueError(f"n_ways must be positive integers, not {self.n_ways!r}")
        if isinstance(self.figure_images, bool) or not isinstance(self.figure_images, int) \
                or self.figure_images < 0:
            raise ValueError(f"figure_images must be an integer >= 0, not "
                             f"{self.figure_images!r}")


#: ``--quick``: tiny sets of 32x32 images.
QUICK_SETTINGS = SegSettings(size=(32, 32), n_train=24, n_test=8, width=4, pyramid=8,
                             figure_images=2)


def train_seg(model, data: SegDataset, cfg: Config, *, bayes: bool,
              weight_decay: float = DEFAULT_WEIGHT_DECAY, progress: bool = True,
              desc: str = "train") -> list[dict[str, float]]:
    """Train ``model`` in place (module docstring); one record per epoch."""
    if bayes and weight_decay:
        weight_decay = 0.0  # BBB's regulariser is its KL term
    if not (isinstance(weight_decay, int | float) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, not {weight_decay!r}")
    gen = set_seed(cfg.seed)
    decay = [s.weight.layer.weight for s in model.stages] if not bayes else []
    rest = [q for q in model.parameters() if all(q is not d for d in decay)]
    groups = [{"params": rest, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    x, y = data.x_train, data.y_train
    n, pixels = len(x), y[0].numel()
    history = []
    bar = progress_bar(range(cfg.epochs), desc=desc, unit="epoch", enabled=progress, leave=False)
    for epoch in bar:
        model.train()
        if bayes:
            model.set_sampling(True)
        tot_nll = tot_kl = right = seen = 0.0
        for idx in batches(n, cfg.batch_size, gen):
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            logits = model(x[idx])
            nll = F.cross_entropy(logits, y[idx], ignore_index=-1)
            kl = model.kl() / (n * pixels) if bayes else torch.zeros(())
            opt.zero_grad()
            (nll + cfg.kl_weight * kl).backward()
            opt.step()
            tot_nll += nll.item() * len(idx)
            tot_kl += kl.item() * len(idx)
            valid = y[idx] >= 0
            right += (logits.argmax(1) == y[idx])[valid].sum().item()
            seen += valid.sum().item()
        sched.step()
        history.append({"epoch": epoch + 1, "nll": tot_nll / n, "kl": tot_kl / n,
                        "train_pixel_acc": 100.0 * right / max(seen, 1)})
        bar.set_postfix(nll=f"{history[-1]['nll']:.3f}",
                        acc=f"{history[-1]['train_pixel_acc']:.1f}")
    model.eval()
    return history


def _net_kw(settings: SegSettings) -> dict:
    return dict(encoder=settings.encoder, width=settings.width, pyramid=settings.pyramid)


def evaluate_set(data: SegDataset, cfg: Config, settings: SegSettings, *,
                 progress: bool = True) -> dict:
    """Train and evaluate every method on one set. Returns ``results`` (list of
    :class:`SegResult`), ``probs`` (method -> the figure images' probabilities),
    ``seconds`` (per step) and ``history`` (per trained network)."""
    if max(settings.n_ways) > cfg.N:
        raise ValueError(f"n_ways must not exceed N={cfg.N}, not {settings.n_ways!r}")
    C, x_te, y_te = data.num_classes, data.x_test, data.y_test
    k = min(settings.figure_images, len(x_te))
    results, probs_fig, seconds, history = [], {}, {}, {}

    def record(name: str, probs: torch.Tensor) -> None:
        results.append(evaluate_seg(name, probs, y_te, cfg))
        probs_fig[name] = probs[:k]

    def predict_gen() -> torch.Generator:
        return torch.Generator().manual_seed(cfg.seed + 1)

    t = time.perf_counter()
    model = build_seg_model(cfg, data.image_shape[0], C, **_net_kw(settings))
    history["BBB"] = train_seg(model, data, cfg, bayes=True, progress=progress,
                               desc=f"train BBB ({data.name})")
    seconds["train BBB"] = time.perf_counter() - t
    t = time.perf_counter()
    record("BBB (float)", bbb_seg_predict(model, x_te, cfg.T, generator=predict_gen()))
    seconds["predict BBB"] = time.perf_counter() - t

    t = time.perf_counter()
    images = approximate(model, cfg.N, cfg.Q, cfg.seed)
    for n in dict.fromkeys(settings.n_ways):
        net = SpinBayesSegNet(images, model, n)
        recalibrate_bn(net, data.x_train, cfg.recal_batches, batch_size=RECAL_BATCH,
                       generator=torch.Generator().manual_seed(cfg.seed + 7919 * n),
                       progress=progress)
        record(f"SpinBayes n={n}", net.predict(x_te, cfg.T, generator=predict_gen()))
    seconds["map + SpinBayes"] = time.perf_counter() - t

    if settings.baselines:
        for method, name, p in (("mc_dropout", "MC-Dropout", settings.p_dropout),
                                ("mc_dropconnect", "MC-DropConnect", settings.p_dropconnect)):
            t = time.perf_counter()
            twin = seg_twin(build_seg_model(cfg, data.image_shape[0], C, **_net_kw(settings)),
                            method, p)
            history[name] = train_seg(twin, data, cfg, bayes=False,
                                      weight_decay=settings.weight_decay, progress=progress,
                                      desc=f"train {name} ({data.name})")
            record(name, mc_seg_predict(twin, x_te, cfg.T, generator=predict_gen()))
            seconds[name] = time.perf_counter() - t
    return {"results": results, "probs": probs_fig, "seconds": seconds, "history": history}


def _checks(results: list[SegResult]) -> list[str]:
    """The issue's acceptance checks, stated with the measured values."""
    by = {r.name: r for r in results}
    lines = []
    if "BBB (float)" in by and "SpinBayes n=2" in by:
        d = by["SpinBayes n=2"].mean_iou - by["BBB (float)"].mean_iou
        lines.append(f"- SpinBayes n=2 mean IoU - BBB mean IoU = {d:+.2f} points "
                     f"({'within' if abs(d) <= 2 else 'NOT within'} 2 points)")
    for r in results:
        ok = r.u_incorrect > r.u_correct
        lines.append(f"- {r.name}: mean U on incorrect pixels {r.u_incorrect:.4f} "
                     f"{'>' if ok else '<='} on correct pixels {r.u_correct:.4f}")
    return lines


def run_segment(settings: SegSettings, cfg: Config, out, *, progress: bool = True) -> dict:
    """Run every data set of ``settings``; write ``segment.md``, ``segment.json`` and the
    Fig. 6 PNGs into ``out``. Returns the JSON-ready report."""
    out = Path(out)
    start = time.perf_counter()
    report = {"config": cfg.to_dict(), "settings": {**asdict(settings), "size":
                                                     list(settings.size)}, "sets": []}
    md = [f"# Segmentation (Table 2, Fig. 6): N={cfg.N}, Q={cfg.Q}, T={cfg.T}, "
          f"encoder {settings.encoder} (width {settings.width}, pyramid {settings.pyramid}), "
          f"{cfg.activation} activation, {cfg.epochs} epochs", ""]
    for source in progress_bar(settings.sources, desc="segment", unit="set", enabled=progress):
        data = load_seg_dataset(source, settings.data_dir, size=settings.size,
                                n_train=settings.n_train, n_test=settings.n_test,
                                seed=cfg.seed, test_fraction=settings.test_fraction,
                                ignore_index=settings.ignore_index)
        res = evaluate_set(data, cfg, settings, progress=progress)
        figures = []
        if res["probs"]:
            k = min(settings.figure_images, len(data.x_test))
            shown = [n for n in res["probs"] if n == "BBB (float)" or n.startswith("SpinBayes")]
            u_ref = shared_scale([res["probs"][n] for n in shown])
            for name in shown:
                slug = name.lower().replace(" (float)", "").replace(" ", "_").replace("=", "")
                figures.append(str(fig6_png(out / f"fig6_{data.name}_{slug}.png",
                                            data.x_test[:k], data.y_test[:k],
                                            res["probs"][name], name, data.label,
                                            data.class_names, u_ref).name))
        title = (f"{data.label}, {len(data.x_train)} train / {len(data.x_test)} test images "
                 f"of {data.image_shape[1]}x{data.image_shape[2]}, {data.num_classes} classes")
        md += [table2_markdown(res["results"], title, data.class_names, cfg),
               "Checks:", *_checks(res["results"]), "",
               "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in res["seconds"].items()),
               "", "Figures: " + (", ".join(figures) if figures else "none"), ""]
        report["sets"].append({
            "name": data.name, "synthetic": data.synthetic, "class_names": list(data.class_names),
            "train_images": len(data.x_train), "test_images": len(data.x_test),
            "image_shape": list(data.image_shape),
            "results": [r.to_dict() for r in res["results"]], "checks": _checks(res["results"]),
            "seconds": res["seconds"], "history": res["history"], "figures": figures})
    report["seconds"] = time.perf_counter() - start
    report["threads"] = torch.get_num_threads()
    md.append(f"Total: {report['seconds']:.1f} s on {torch.get_num_threads()} thread(s).")
    report["markdown"] = "\n".join(md) + "\n"
    _atomic_write(out / "segment.md", report["markdown"])
    _atomic_write(out / "segment.json", json.dumps(_jsonable(report), indent=2,
                                                   allow_nan=False) + "\n")
    return report


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
