"""Sharded co-verification on Ray actors: ``spinbayes sim --images K --workers W``.

The K images are cut into contiguous shards (:func:`~spinbayes.sim.shard.plan_shards`; one
per worker unless asked otherwise). W actors each hold the trained model and its mapping
(sent once through Ray's object store, so every actor runs the very same integer network)
and run shard after shard with :func:`spinbayes.workflow_hw.coverify` (``start`` = the
shard's first image: the RTL's arbiters start where a whole run has them there). An actor
builds the simulator on its first shard or takes it from the build cache of its machine
(on one machine the driver exports the harness's Verilog first, and the runner's lock lets
one actor build it); a cocotb simulation is one process, so each shard starts the simulator
and programs the cells once. The results merge into one
:class:`~spinbayes.sim.coverify.CoverifyResult` that accounts for every image exactly once
(:func:`~spinbayes.sim.shard.merge_results`).

An actor that dies (its process killed, its node lost) is replaced by a new actor, which Ray
places wherever a CPU is free, and the shard it held runs again there; a shard whose
simulation fails (a timeout, a crash of the simulator itself) stops the run with the error.
"""

from __future__ import annotations

import time
from collections import deque

from .cluster import node_label, ray_session, resolve_address

__all__ = ["coverify_sharded"]


class _Worker:
    """One simulator host: the model and mapping, the run settings; runs shards."""

    def __init__(self, trained, mapped, simulator: str, stall: float, threads: int,
                 health=None):
        from .workflow import set_threads

        set_threads(threads)
        self.trained, self.mapped = trained, mapped
        self.simulator, self.stall, self.health = simulator, stall, health

    def where(self) -> str:
        return node_label()

    def run(self, start: int, stop: int):
        from . import workflow_hw as wh

        t0 = time.perf_counter()
        res, _ = wh.coverify(self.trained, self.mapped, images=stop - start, start=start,
                             simulator=self.simulator, stall=self.stall, progress=False,
                             health=self.health)
        res.timings["shard_wall_s"] = time.perf_counter() - t0
        res.timings["worker"] = node_label()
        return start, res


def coverify_sharded(trained, mapped, *, images: int, simulator: str, workers: int,
                     stall: float = 0.0, shards: int | None = None,
                     address: str | None = None, threads: int = 1, max_restarts: int = 3,
                     progress: bool = True, health=None):
    """Co-verify the first ``images`` test images on ``workers`` Ray actors in ``shards``
    shards (default: one per worker). Ray is embedded (``workers`` CPUs, 127.0.0.1 only)
    unless ``address`` (or ``RAY_ADDRESS``) names a cluster. Up to ``max_restarts`` dead
    actors are replaced. Returns (CoverifyResult, RtlParams, run info: shards, workers,
    restarts, wall time)."""
    from . import workflow_hw as wh
    from .sim.shard import merge_results, plan_shards

    for name, v in (("workers", workers), ("images", images)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    if images > len(trained.data.x_test):
        raise ValueError(f"{images} images asked for: the test set has "
                         f"{len(trained.data.x_test)}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be a non-negative integer, not {max_restarts!r}")
    plan = plan_shards(images, shards if shards is not None else workers)
    params = wh.hw_params(mapped, trained.cfg)      # builds the integer network once, here
    address = resolve_address(address)
    cpus = None if address else workers
    if address is None:      # export the harness once, here, for every local actor's cache
        from .sim.coverify import harness_verilog

        harness_verilog(params)
    t0 = time.perf_counter()
    with ray_session(address, num_cpus=cpus) as ray:
        parts, info = _run(ray, plan, trained, mapped, simulator=simulator, stall=stall,
                           workers=min(workers, len(plan)), threads=threads,
                           max_restarts=max_restarts, progress=progress, images=images,
                           health=health)
    result = merge_results(parts)
    info.update(wall_s=time.perf_counter() - t0, shards=[list(s) for s in plan])
    result.timings["ray"] = info
    return result, params, info


def _run(ray, plan, trained, mapped, *, simulator, stall, workers, threads, max_restarts,
         progress, images, health=None):
    from ray.exceptions import RayActorError, RayTaskError
    from tqdm.auto import tqdm

    actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_Worker)
    refs = (ray.put(trained), ray.put(mapped))

    def new_actor():
        return actor_cls.remote(*refs, simulator, stall, threads, health)

    idle = deque(new_actor() for _ in range(workers))
    pending = deque(plan)
    running: dict = {}
    parts, restarts, dead = [], 0, []
    bar = tqdm(total=images, unit="img", desc=f"coverify ({simulator}, {workers} workers)",
               disable=None if progress else True)
    try:
        while pending or running:
            while idle and pending:
                actor, shard = idle.popleft(), pending.popleft()
                running[actor.run.remote(*shard)] = (actor, shard)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, shard = running.pop(done[0])
            try:
                start, res = ray.get(done[0])
            except RayActorError as e:        # the actor's process or node is gone
                restarts += 1
                dead.append({"shard": list(shard), "error": type(e).__name__})
                if restarts > max_restarts:
                    raise RuntimeError(f"{restarts} co-verification actors died (limit "
                                       f"{max_restarts}); last: {e}") from None
                pending.appendleft(shard)     # runs again on a new actor
                idle.append(new_actor())
                continue
            except RayTaskError as e:         # the shard itself failed: report its error
                cause = e.cause if isinstance(e.cause, Exception) else e
                raise cause from None
            parts.append((start, res))
            idle.append(actor)
            bar.update(res.images)
    finally:
        bar.close()
        for actor, _ in list(running.values()) + [(a, None) for a in idle]:
            ray.kill(actor)
    workers_seen = sorted({r.timings["worker"] for _, r in parts})
    return parts, {"workers": workers, "actors_died": restarts, "died": dead,
                   "hosts": workers_seen}
