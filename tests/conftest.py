"""Shared fixtures: every test starts from the same torch RNG state and restores it after."""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import warnings

import pytest
import torch

# Importing torchrl (installed for the differential tests) switches the process-wide start
# method to "spawn" unless one is already fixed, after which every worker process a later
# test starts pays seconds of re-imports. Fixing the platform default here keeps it.
multiprocessing.get_start_method(allow_none=False)


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
def descendants():
    """``descendants(pid=os.getpid())``: the live processes below ``pid`` (to check that none is left)."""

    def descendants_of(pid: int | None = None) -> list[int]:
        return _descendants(os.getpid() if pid is None else pid)

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
