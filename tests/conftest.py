"""Shared fixtures: every test starts from the same torch RNG state and restores it after."""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import signal
import time
import warnings

import pytest
import torch

# Importing torchrl (installed for the differential tests) switches the process-wide start
# method to "spawn" unless one is already fixed, after which every worker process a later
# test starts pays seconds of re-imports. Fixing the platform default here keeps it.
multiprocessing.get_start_method(allow_none=False)


def _starts_ray_here(item: pytest.Item) -> bool:
    """Whether ``item`` comes from a module about Ray (``test_ray*.py``, ``bench_ray_*``, ``ray_buffer.py``...)."""
    return "ray" in item.path.stem.split("_")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that start Ray in this process run last (in their own order).

    ``ray.shutdown()`` leaves Ray's native threads running in the process (9 of them here),
    and forking a process whose other threads may hold a lock (malloc's, gRPC's) can crash
    or hang the child: a later test's ParallelEnv worker once died with SIGSEGV while
    starting, right after the RayReplayBuffer doctest. Nothing forks the test process after
    these tests.
    """
    items[:] = [item for item in items if not _starts_ray_here(item)] + [
        item for item in items if _starts_ray_here(item)
    ]


_SESSION_MARK = "TDRL_TEST_SESSION"
_leftovers: list[str] = []
# helpers that end when this process does: Python's own, and wandb's service (given our pid)
_ENDS_WITH_US = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "wandb-core")


def _processes_of_this_session() -> list[tuple[int, str]]:
    """(pid, command line) of every other live process that inherited this session's mark, orphans included."""
    mark = f"{_SESSION_MARK}={os.getpid()}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(helper in cmdline for helper in _ENDS_WITH_US):
            continue
        found.append((int(entry), cmdline[:160]))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    """Mark this session's environment, which every process it starts inherits (see pytest_sessionfinish)."""
    os.environ[_SESSION_MARK] = str(os.getpid())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests stop the servers and workers they start: whatever still runs 30 s after the last
    test (a Ray runtime orphaned by a killed driver, a worker that outlived its owner) is
    named in the summary, then killed so that it cannot outlive the run."""
    if os.environ.get(_SESSION_MARK) != str(os.getpid()):
        return
    deadline = time.monotonic() + 30.0
    left = _processes_of_this_session()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _processes_of_this_session()
    for pid, cmdline in left:
        _leftovers.append(f"pid {pid}: {cmdline}")
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _leftovers:
        terminalreporter.write_sep("=", "processes the tests left running (now killed)", red=True)
        for line in _leftovers:
            terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    """With ``TDRL_REQUIRE_PEERS=1`` (set by scripts/test.sh on its TorchRL venv), missing peers fail the run.

    The differential tests skip when TorchRL or Stable-Baselines3 is absent; in the run meant
    to execute them, a skip would hide that nothing was compared.
    """
    if os.environ.get("TDRL_REQUIRE_PEERS") != "1":
        return
    missing = []
    for name in ("torchrl", "stable_baselines3"):
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        raise pytest.UsageError(
            f"TDRL_REQUIRE_PEERS=1 but {', '.join(missing)} cannot be imported: "
            'install the peers with pip install -e ".[compare]"'
        )


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        yield
    torch.set_rng_state(state)


def _descendants(pid: int) -> list[int]:
    """The live (not zombie) descendants of process ``pid``, read from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@pytest.fixture
def gc_enabled():
    """Python's garbage collector on during the test, and as it was afterwards (a test may turn it off)."""
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.fixture
def descendants():
    """``descendants(pid=os.getpid())``: the live processes below ``pid`` (to check that none is left).

    For this process, only those that were not there when the test started: what an earlier
    test left exiting (a Ray runtime winding down after ``ray.shutdown()``) is not this test's.
    """
    before = set(_descendants(os.getpid()))

    def descendants_of(pid: int | None = None) -> list[int]:
        if pid is None:
            return [p for p in _descendants(os.getpid()) if p not in before]
        return _descendants(pid)

    return descendants_of


@contextlib.contextmanager
def _ctrl_c_after(seconds: float | None):
    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    if seconds is not None:
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def ctrl_c_after():
    """``with ctrl_c_after(0.1): ...`` raises KeyboardInterrupt in the main thread after 0.1 s, as Ctrl-C would.

    (A SIGALRM timer whose handler raises, as SIGINT's does; ``None``: no interrupt.)
    """
    return _ctrl_c_after


class CheckpointKit:
    """Helpers for tests of replay-buffer state: deep snapshots, and re-sealing an edited checkpoint."""

    @staticmethod
    def snapshot(buffer) -> dict:
        """A deep copy of everything a buffer holds (storage content, sampler, writer, generator)."""
        import copy

        state = buffer.state_dict()

        def own(obj):
            if isinstance(obj, torch.Tensor):
                return obj.clone()
            if hasattr(obj, "clone") and hasattr(obj, "batch_size"):
                return obj.clone()
            if isinstance(obj, dict):
                return {k: own(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [own(v) for v in obj]
            return copy.deepcopy(obj)

        return own(state)

    @staticmethod
    def differences(a, b, where: str = "") -> list[str]:
        """Where two snapshots differ (``[]``: identical, NaN equal to NaN, dtypes and shapes included)."""
        from tensordict import TensorDictBase

        if isinstance(a, TensorDictBase) and isinstance(b, TensorDictBase):
            if a.batch_size != b.batch_size:
                return [f"{where}: batch size {a.batch_size} != {b.batch_size}"]
            return CheckpointKit.differences(a.to_dict(), b.to_dict(), where)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if a.dtype != b.dtype or a.shape != b.shape:
                return [f"{where}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"]
            same = torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all()))
            return [] if same else [f"{where}: tensors differ"]
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
            return [d for k in a for d in CheckpointKit.differences(a[k], b[k], f"{where}.{k}")]
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                return [f"{where}: length {len(a)} != {len(b)}"]
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in CheckpointKit.differences(x, y, f"{where}[{i}]")]
        if type(a) is not type(b) or a != b:
            return [f"{where}: {a!r} != {b!r}"]
        return []

    @staticmethod
    def reseal(json_path) -> None:
        """Recomputes the checksums of an edited checkpoint, as a writer with a bug would have saved it."""
        import json
        import zlib
        from pathlib import Path

        json_path = Path(json_path)
        document = json.loads(json_path.read_text())
        files = document.get("files")
        for name, record in files.items() if isinstance(files, dict) else ():  # a mutation may have replaced it
            path = json_path.parent / name
            if isinstance(record, dict) and path.is_file():
                data = path.read_bytes()
                record["bytes"], record["crc32"] = len(data), zlib.crc32(data)
        body = {k: v for k, v in document.items() if k != "checksum"}
        document["checksum"] = {"crc32": zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())}
        json_path.write_text(json.dumps(document))


@pytest.fixture(scope="session")
def checkpoint_kit() -> type[CheckpointKit]:
    return CheckpointKit


def _ray_processes() -> list[int]:
    """This process's live descendants that belong to a Ray runtime (raylet, gcs_server, workers...)."""
    found = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ray" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def ray_local_runtime():
    """A local Ray runtime of the module's own (2 CPUs), stopped at its end with every process it started.

    ``address="local"`` starts a new one even when another Ray cluster runs on this machine.
    ``ray.shutdown()`` returns before Ray's processes have exited; the next module waits
    until they have (30 s at most), so a later test that counts child processes sees none.
    """
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
        deadline = time.monotonic() + 30.0
        while _ray_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
