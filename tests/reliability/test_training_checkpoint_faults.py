"""Fault injection: a process killed (SIGKILL) at each file-system call of ``Checkpoint.save``.

Each trial saves generation 2 of a training state over generation 1 in a forked child that
kills itself at its k-th file-system call, for every k until a save completes. SIGKILL runs
no cleanup. The checkpoint must then load, in a fresh process state, as generation 1 or
generation 2 in every component together (module, optimizer, replay buffer, JSON values):
never a mix, never an error.
"""

from __future__ import annotations

import builtins
import multiprocessing
import os
import signal

import pytest
import torch

from tdrl.checkpoint import Checkpoint
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage

_FORK = multiprocessing.get_context("fork")
_FS_CALLS = ("open", "mkdir", "rename", "replace", "fsync", "unlink", "rmdir", "scandir")


def _state(g: int) -> Checkpoint:
    """Generation ``g`` of a small training state: every component's content depends on ``g``."""
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float(g))
    optim = torch.optim.SGD(net.parameters(), lr=0.1 * g, momentum=0.9)
    buffer = ReplayBuffer(storage=LazyTensorStorage(32), batch_size=4)
    buffer.extend(torch.full((10 + g,), g))
    return Checkpoint(net=net, optim=optim, replay_buffer=buffer, progress={"generation": g})


def _loaded_generation(folder) -> int:
    """Loads ``folder`` into a fresh state; asserts every component is of one generation; returns it."""
    target = _state(0)
    target.load(folder)  # never an error
    parts = target.components
    g = parts["progress"]["generation"]
    assert torch.equal(parts["net"].weight, torch.full((2, 3), float(g)))
    assert parts["optim"].param_groups[0]["lr"] == pytest.approx(0.1 * g)
    assert torch.equal(parts["replay_buffer"][:], torch.full((10 + g,), g))
    return g


def _run_child(stop_at: int, folder: str) -> None:
    torch.set_num_threads(1)
    state = _state(2)
    kill, getpid, count = os.kill, os.getpid, [0]

    def wrap(function):
        def call(*args, **kwargs):
            count[0] += 1
            if count[0] == stop_at:
                kill(getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return call

    try:
        for name in _FS_CALLS:
            setattr(os, name, wrap(getattr(os, name)))
        builtins.open = wrap(builtins.open)
        state.save(folder)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


@pytest.mark.slow
def test_a_training_checkpoint_save_killed_at_each_file_system_call_leaves_one_whole(tmp_path):
    outcomes, stop_at = {"previous": 0, "new": 0}, 0
    while True:
        stop_at += 1
        folder = tmp_path / f"call_{stop_at}" / "ckpt"
        _state(1).save(folder)
        child = _FORK.Process(target=_run_child, args=(stop_at, str(folder)), daemon=True)
        child.start()
        child.join(60)
        assert child.exitcode is not None, "the child is still running"
        g = _loaded_generation(folder)
        if child.exitcode == 0:  # stop_at is past the last call: the save finished
            assert g == 2
            break
        assert child.exitcode == -signal.SIGKILL
        assert g in (1, 2)
        outcomes["previous" if g == 1 else "new"] += 1
        _state(3).save(folder)  # the next save cleans up whatever the kill left
        assert sorted(os.listdir(folder.parent)) == ["ckpt"]
    print(f"\nCheckpoint.save killed at each of its {stop_at - 1} file-system calls: loaded {outcomes}")
    assert stop_at > 30  # every file, fsync and rename of a save was a kill point
    assert outcomes["previous"] > 0
    assert outcomes["new"] > 0
