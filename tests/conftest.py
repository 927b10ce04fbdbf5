"""Shared fixtures, built once per session: the digits, the trained models the tests share
(one per distinct configuration), their crossbar mappings, and the Amaranth simulation
runner."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

# Before torch loads its OpenMP runtime: threads that wait sleep instead of spinning, so a
# second torch thread does not take the core that a simulator or another test process needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from spinbayes.config import Config
from spinbayes.golden.datasets import Dataset, load_digits_split
from spinbayes.golden.mapping import map_model
from spinbayes.golden.networks import build_model
from spinbayes.golden.train import train_bbb


def _train(cfg: Config, data: Dataset):
    """Train on one torch thread: the nets are tiny, and a second thread only spins while
    another process (or a pytest-xdist worker) holds the other core (7 s instead of 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model(cfg, data.image_shape, data.num_classes)
        train_bbb(model, data.x_train, data.y_train, cfg, progress=False)
        return model
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    return load_digits_split(0.2, 0)


@pytest.fixture(scope="session")
def small_cfg():
    return Config(hidden=(16,), epochs=3, seed=0, recal_batches=2)


@pytest.fixture(scope="session")
def small_model(digits, small_cfg):
    """A 64-16-10 comparator MLP trained for 3 epochs on the digits (about a second)."""
    return _train(small_cfg, digits)


@pytest.fixture(scope="session")
def small_mapped(small_model, digits):
    """``small_model`` on N = 5 crossbars of Q = 4 bits (seed 0), BatchNorm re-calibrated on
    2 batches: ``small_mapped.net(n)`` / ``.hw(n)`` are built once per n for the session."""
    return map_model(small_model, digits.x_train, N=5, Q=4, seed=0, recal_batches=2)


@pytest.fixture(scope="session")
def tiny_digits(digits) -> Dataset:
    """The digits average-pooled to 4x4 images (16 inputs), the input of the tiny designs."""
    def pool(x):
        return torch.nn.functional.avg_pool2d(x, 2)

    return Dataset("digits-4x4", pool(digits.x_train), digits.y_train, pool(digits.x_test),
                   digits.y_test)


@pytest.fixture(scope="session")
def tiny_model(tiny_digits):
    """A 16-6-10 comparator MLP with 2-bit inputs, trained for 2 epochs on the 4x4 digits:
    the network of the tiny RTL designs (N = 3, rows_max = 16)."""
    return _train(Config(hidden=(6,), epochs=2, input_bits=2), tiny_digits)


@pytest.fixture(scope="session")
def mlp32_model(digits):
    """A 64-32-10 comparator MLP trained for 30 epochs (the slow network tests)."""
    return _train(Config(hidden=(32,), epochs=30), digits)


def _run_sim(dut, *testbenches, clock: bool = True) -> None:
    """Run Amaranth testbenches (async functions of ``ctx``) on ``dut`` until they all
    return; ``clock``: a 100 MHz clock on the sync domain (False for a combinational dut)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


@pytest.fixture(scope="session")
def run_sim():
    """``run_sim(dut, *testbenches, clock=True)``: the Amaranth simulation runner."""
    return _run_sim


def _check_against_reference(hw, x, results):
    """Run the integer reference on the RTL's own arbiter choices (``results``: the
    ImageResults of CoreDriver.infer, one per image of ``x``) and assert every per-pass
    output, average and class equal; returns the reference output."""
    choices = torch.from_numpy(np.stack([r.choices for r in results], axis=1))
    ref = hw.run(x, choices)
    for b, r in enumerate(results):
        assert np.array_equal(r.per_pass, ref.per_pass[b].numpy()), f"image {b}: per-pass y"
        assert np.array_equal(r.averaged, ref.averaged[b].numpy()), f"image {b}: averaged"
        assert r.prediction == int(ref.prediction[b]), f"image {b}: class"
    return ref


@pytest.fixture(scope="session")
def check_reference():
    """The RTL-against-integer-reference check shared by the RTL tests."""
    return _check_against_reference


# --- Ray: a tiny trained network and a worker killer (tests/test_sweep.py, tests/sim/test_shard.py)

@pytest.fixture(scope="session")
def tiny_trained():
    """A 64-8-10 comparator MLP trained one epoch through the workflow layer, mapped; T = 4
    keeps its co-verification on Icarus to a few seconds."""
    from spinbayes import workflow as wf

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained = wf.train(Config(hidden=(8,), epochs=1, T=4, recal_batches=1,
                                  ood_samples=20), None, progress=False)
        return trained, wf.map_trained(trained)
    finally:
        torch.set_num_threads(threads)


class RayKiller:
    """Kills, once, the first process descended from this one whose title (Ray's
    ``ray::<task>`` while a task runs) contains ``title``; watches from a thread."""

    def __init__(self, title: str, timeout: float = 120.0):
        import threading

        self.title, self.timeout, self.killed = title, timeout, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def _ancestors(pid: int):
        import os

        while pid > 1:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    pid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                return
            yield pid
            if pid == os.getpid():
                return

    def _watch(self):
        import os
        import signal
        import time

        end = time.monotonic() + self.timeout
        while not self._stop.is_set() and time.monotonic() < end:
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        title = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if self.title in title and os.getpid() in self._ancestors(int(d)):
                    os.kill(int(d), signal.SIGKILL)
                    self.killed.append(int(d))
                    return
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()


class _RayTestLock:
    """Serialises the tests that start Ray when pytest-xdist runs tests side by side (the
    README's `pytest -n 2`): two Ray sessions at once compete for the 2 CPUs their tests
    assume, and ``ray_killer`` stops processes by title machine-wide. A file lock between
    processes, re-entrant within one (a module's Ray fixture and a test under it)."""

    def __init__(self, path: Path):
        self.path, self._depth, self._file = path, 0, None

    @contextlib.contextmanager
    def held(self):
        if self._depth == 0:
            self._file = open(self.path, "w")  # noqa: SIM115 (held across yields)
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._file.close()
                self._file = None


RAY_TEST_LOCK = _RayTestLock(Path(tempfile.gettempdir()) / "spinbayes-ray-tests.lock")


@pytest.fixture(scope="session")
def ray_test_lock():
    """:data:`RAY_TEST_LOCK`, for fixtures of a wider scope (``with ray_test_lock.held():``)."""
    return RAY_TEST_LOCK


@pytest.fixture
def ray_lock():
    """Hold :data:`RAY_TEST_LOCK` for the test."""
    with RAY_TEST_LOCK.held():
        yield


@pytest.fixture
def ray_killer():
    """ray_killer(title) starts a RayKiller; stopped at the end of the test."""
    made = []

    def start(title: str) -> RayKiller:
        made.append(RayKiller(title))
        return made[-1]
    yield start
    for k in made:
        k.stop()

# --- random integer convolution networks (tests/rtl/test_conv_core.py, tests/sim) ---------
def _hidden_layer(rng, kind, codes, in_bits, A, **geo):
    """A hidden HwLayer with sorted thresholds spread over its sums' likely range."""
    from spinbayes.golden.hardware import HwLayer

    out = codes.shape[1]
    rows = int(np.prod(codes.shape[2:]))
    spread = max(2, int(3 * np.sqrt(rows) * 2 ** in_bits))
    theta = np.sort(rng.integers(-spread, spread + 1, (out, 2 ** A - 1)), axis=1)
    sign = rng.choice([-1, 1], out)
    return HwLayer(kind, torch.from_numpy(codes), in_bits, thresholds=torch.from_numpy(theta),
                   sign=torch.from_numpy(sign), out_bits=A, **geo)


def random_conv_network(rng, *, N=3, n_way=1, Q=3, A_in=2, A=1, convs=None,
                        dense_hidden=None):
    """An integer network: ``convs`` convolutions (None: 1 or 2; C_in 1-2, H and W 3-7,
    kernel 1-3, stride 1-2, padding 0-1, pooling 0 or 2, 1-3 outputs), a dense hidden layer
    (``dense_hidden`` None: at random) and a dense output layer; returns (hw, image_shape)."""
    from spinbayes.golden.hardware import HwLayer, HwNetwork

    C, H, W = int(rng.integers(1, 3)), int(rng.integers(3, 8)), int(rng.integers(3, 8))
    q = 2 ** (Q - 1) - 1
    image_shape, shape = (C, H, W), (C, H, W)
    layers, in_bits = [], A_in
    for _ in range(int(rng.integers(1, 3)) if convs is None else convs):
        c, h, w = shape
        p = int(rng.integers(0, 2))
        s = int(rng.integers(1, 3))
        k = int(rng.integers(1, min(3, min(h, w) + 2 * p) + 1))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        pool = int(rng.choice([0, 2])) if min(ho, wo) >= 2 else 0
        out = int(rng.integers(1, 4))
        codes = rng.integers(-q, q + 1, (N, out, c, k, k))
        layers.append(_hidden_layer(rng, "conv2d", codes, in_bits, A, stride=s, padding=p,
                                    pool=pool))
        shape, in_bits = ((out, ho // pool, wo // pool) if pool else (out, ho, wo)), A
    layers[-1].flatten = True
    fan_in = int(np.prod(shape))
    if dense_hidden is None:
        dense_hidden = bool(rng.integers(0, 2))
    if dense_hidden:
        out = int(rng.integers(2, 6))
        layers.append(_hidden_layer(rng, "linear", rng.integers(-q, q + 1, (N, out, fan_in)),
                                    A, A))
        fan_in = out
    ncls = int(rng.integers(2, 5))
    layers.append(HwLayer("linear", torch.from_numpy(rng.integers(-q, q + 1, (N, ncls, fan_in))),
                          A, scale=torch.from_numpy(rng.integers(-40, 41, ncls)),
                          offset=torch.from_numpy(rng.integers(-500, 501, ncls))))
    return HwNetwork(layers, A_in, False, N, Q, n_way, image_shape=image_shape), image_shape


@pytest.fixture(scope="session")
def conv_case():
    """``conv_case(seed, n_way=1, B=2, T=2, **kw) -> (hw, x, T)``: a random integer
    convolution network (:func:`random_conv_network`, ``kw`` passed on) and B random input
    images of integer codes, both from ``seed``."""
    def make(seed, n_way=1, B=2, T=2, **kw):
        rng = np.random.default_rng(seed)
        hw, image_shape = random_conv_network(rng, n_way=n_way, **kw)
        x = torch.from_numpy(rng.integers(0, 2 ** hw.input_bits, (B, *image_shape)))
        return hw, x, T
    return make
