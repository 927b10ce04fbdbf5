"""Ray for the sweep and the sharded co-verification: embedded on this machine by default,
an existing cluster when given its address.

:func:`ray_session` is the one place that starts or joins Ray:

* no address (and no ``RAY_ADDRESS``): a Ray instance for this process alone, with
  ``num_cpus`` CPUs (default: every core), no dashboard, every Ray process bound to
  127.0.0.1; it shuts down when the block ends. Ray on Linux binds its servers to the
  machine's outward address unless its "no cluster" switch (the environment variable
  :data:`LOCAL_ONLY_ENV` = 0, read when Ray is imported) makes it use the loopback address;
  the session throws that switch (:func:`bind_loopback`) and refuses to go on if Ray bound
  elsewhere;
* an address (``--address``, else ``RAY_ADDRESS``): joins that cluster (``ray start --head``
  on one machine, ``ray start --address=HEAD:6379`` on the others; docs/SCALE.md) and
  disconnects at the end, leaving the cluster running;
* Ray already initialised in this process (a test's cluster): used as it is, left running.

Ray 2.60 turns token authentication on for the local instance it starts (a token in
``~/.ray/auth_token``); for a cluster, docs/SCALE.md says how to turn it on.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

__all__ = ["LOCAL_ONLY_ENV", "RAY_ADDRESS_ENV", "bind_loopback", "node_label", "ray_session",
           "resolve_address"]

#: Ray's switch (read at import) between cluster mode and a loopback-only single node.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: The cluster address Ray itself reads when none is passed.
RAY_ADDRESS_ENV = "RAY_ADDRESS"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``, else None (embedded Ray)."""
    return address or os.environ.get(RAY_ADDRESS_ENV) or None


def bind_loopback() -> None:
    """Make the Ray nodes this process starts bind to 127.0.0.1: Ray's "no cluster" switch,
    in the environment before Ray is imported, else where Ray reads it
    (``services.get_node_ip_address``) when it starts a node."""
    if "ray" not in sys.modules:
        os.environ[LOCAL_ONLY_ENV] = "0"
        return
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _check_cpus(num_cpus) -> int:
    if num_cpus is None:
        return os.cpu_count() or 1
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
        raise ValueError(f"workers must be a positive integer, not {num_cpus!r}")
    return num_cpus


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None):
    """Ray for the block (see the module docstring); yields the ``ray`` module.
    ``num_cpus`` is the embedded instance's CPU count; with an address the cluster's
    resources decide and ``num_cpus`` must be None."""
    address = resolve_address(address)
    if address is not None and num_cpus is not None:
        raise ValueError("workers (--workers) sets the CPUs of the local Ray; with an address "
                         "(--address or RAY_ADDRESS) the cluster's CPUs decide")
    cpus = _check_cpus(num_cpus)
    if address is None and not _initialized():
        bind_loopback()
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address is not None:
        ray.init(address=address, **quiet)
    else:                     # RAY_ADDRESS is unset here, so init starts a new instance
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    try:
        if address is None:
            ip = ray.util.get_node_ip_address()
            if ip not in _LOOPBACK:
                raise RuntimeError(f"the local Ray bound its servers to {ip}, not to the "
                                   f"loopback address; refusing to run")
        yield ray
    finally:
        ray.shutdown()


def _initialized() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def node_label() -> str:
    """Host name and process id of the calling worker (recorded with each result)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
