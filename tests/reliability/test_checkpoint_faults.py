"""Fault injection: processes killed (SIGKILL) while saving a replay buffer or writing a memmap storage.

Each trial runs the writer in a forked child and kills it: at a random instant (seeded
delays), or at the k-th file-system call of a save, for every k. SIGKILL runs no cleanup
code and flushes nothing, as an OOM kill or a power-off of the process would. Then:

- a checkpoint folder loads as the previous save or the new one, exactly (every tensor,
  cursor, permutation, priority and generator state), never a mix, never an error;
- a memmap storage re-opens consistent (every item whole, in ring order, nothing that was
  reported written is lost) or is refused with an error naming the items a killed
  overwrite may have torn;
- the child is gone (reaped, no process left).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import time

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ReplayBuffer,
    SamplerWithoutReplacement,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)

_FORK = multiprocessing.get_context("fork")  # a fork starts in milliseconds: dozens of trials fit the budget
_CAPACITY = 1200
_KINDS = ("without_replacement", "prioritized")


# ------------------------------------------------------------------------------ helpers
def _buffer(kind: str, seed: int = 0):
    if kind == "without_replacement":
        return TensorDictReplayBuffer(
            storage=LazyTensorStorage(_CAPACITY),
            sampler=SamplerWithoutReplacement(),
            batch_size=8,
            generator=torch.Generator().manual_seed(seed),
        )
    return TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(_CAPACITY), batch_size=8)


def _generation(kind: str, g: int):
    """The buffer of save number ``g``: every part (length, data, sampler, writer, generator) depends on ``g``."""
    count = 1000 + (g * 37) % 97
    obs = torch.arange(count * 32, dtype=torch.float64).reshape(count, 32) + 1e6 * g
    data = TensorDict(
        {
            "gen": torch.full((count,), g),
            "obs": obs,
            "next": {"obs": obs + 1, "reward": torch.rand(count, 1, generator=torch.Generator().manual_seed(g))},
        },
        [count],
    )
    buffer = _buffer(kind, seed=g)
    buffer.extend(data)
    if kind == "without_replacement":
        for _ in range(1 + g % 5):
            buffer.sample()
    else:
        buffer.update_priority(torch.arange(count), (torch.arange(count) * (g + 1)) % 17 + 0.5)
    return buffer


def _loaded_generation(kind: str, folder, checkpoint_kit) -> int:
    """Loads ``folder`` into a fresh buffer; asserts it is exactly some save's buffer; returns which."""
    loaded = _buffer(kind, seed=12345)
    loaded.loads(folder)  # never an error
    g = int(loaded.storage.get(0)["gen"])
    assert (
        checkpoint_kit.differences(checkpoint_kit.snapshot(loaded), checkpoint_kit.snapshot(_generation(kind, g))) == []
    )
    return g


def _assert_gone(process) -> None:
    process.join(30)
    assert process.exitcode is not None, "the child is still running"
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    # this test's child was reaped (workers of other tests' unreferenced envs may still await the
    # garbage collector: they are not this test's concern)
    assert process not in multiprocessing.active_children()


def _run_child(target, *args) -> None:
    """Child entry: never returns into the parent's code (pytest's frames live in this fork too)."""
    torch.set_num_threads(1)  # no OpenMP pool inherited across the fork
    try:
        target(*args)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


# --------------------------------------------------------------------------- dumps() killed
def _saving(kind: str, folder: str, conn) -> None:
    g = 1
    while True:
        _generation(kind, g).dumps(folder)
        conn.send(g)
        g += 1


@pytest.mark.slow
def test_a_save_killed_at_a_random_instant_leaves_the_previous_checkpoint_or_the_new_one(tmp_path, checkpoint_kit):
    trials, outcomes = 40, {"previous": 0, "new": 0}
    for trial in range(trials):
        rng = random.Random(1000 + trial)
        kind = _KINDS[trial % 2]
        folder = tmp_path / f"trial_{trial}"
        receiver, sender = _FORK.Pipe(duplex=False)
        child = _FORK.Process(target=_run_child, args=(_saving, kind, str(folder), sender), daemon=True)
        child.start()
        sender.close()
        assert receiver.poll(60), "the child never finished its first save"
        time.sleep(rng.uniform(0.0, 0.04))  # a few saves' worth: any instant of a save, renames included
        os.kill(child.pid, signal.SIGKILL)
        _assert_gone(child)
        assert child.exitcode == -signal.SIGKILL
        completed = 0
        while receiver.poll(0):
            try:
                completed = receiver.recv()
            except (EOFError, OSError):
                break
        g = _loaded_generation(kind, folder, checkpoint_kit)
        assert g in (completed, completed + 1), f"trial {trial}: loaded save {g}, the last finished was {completed}"
        outcomes["previous" if g == completed else "new"] += 1
        _generation(kind, 999).dumps(folder)  # the next save cleans up whatever the kill left
        assert os.listdir(folder) == ["replay_buffer"]
    print(f"\ndumps() killed at random instants: {trials} trials, loaded {outcomes}")  # the docs quote it
    assert sum(outcomes.values()) == trials


_FS_CALLS = ("open", "mkdir", "rename", "replace", "fsync", "unlink", "rmdir", "scandir")


def _saving_until_call(kind: str, folder: str, stop_at: int) -> None:
    buffer = _generation(kind, 2)
    kill, getpid, count = os.kill, os.getpid, [0]

    def wrap(function):
        def call(*args, **kwargs):
            count[0] += 1
            if count[0] == stop_at:
                kill(getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return call

    import builtins

    for name in _FS_CALLS:
        setattr(os, name, wrap(getattr(os, name)))
    builtins.open = wrap(builtins.open)
    buffer.dumps(folder)


def test_a_save_killed_at_each_of_its_file_system_calls_leaves_one_checkpoint_whole(tmp_path, checkpoint_kit):
    kind, outcomes, stop_at = "without_replacement", {"previous": 0, "new": 0}, 0
    while True:
        stop_at += 1
        folder = tmp_path / f"call_{stop_at}"
        _generation(kind, 1).dumps(folder)
        child = _FORK.Process(target=_run_child, args=(_saving_until_call, kind, str(folder), stop_at), daemon=True)
        child.start()
        _assert_gone(child)
        g = _loaded_generation(kind, folder, checkpoint_kit)
        if child.exitcode == 0:  # stop_at is past the last call: the save finished
            assert g == 2
            break
        assert child.exitcode == -signal.SIGKILL
        assert g in (1, 2)
        outcomes["previous" if g == 1 else "new"] += 1
    print(f"\ndumps() killed at each of its {stop_at - 1} file-system calls: loaded {outcomes}")
    assert stop_at > 20  # every file, fsync and rename of a save was a kill point
    assert outcomes["previous"] > 0
    assert outcomes["new"] > 0


# ----------------------------------------------------------------- memmap extend() killed
_RING = 256


def _steps(start: int, count: int) -> TensorDict:
    step = torch.arange(start, start + count)
    return TensorDict(
        {
            "step": step,
            "obs": step.double().unsqueeze(-1).expand(count, 16).clone(),
            "even": (step % 2 == 0).unsqueeze(-1),
            "next": {"obs": (step + 1).double().unsqueeze(-1).expand(count, 16).clone(), "reward": step.float()},
        },
        [count],
    )


def _batch_sizes(seed: int):
    rng = random.Random(seed)
    while True:
        yield rng.randint(1, 48)


def _extending(folder: str, seed: int, conn) -> None:
    buffer = ReplayBuffer(storage=LazyMemmapStorage(_RING, scratch_dir=folder))
    written = 0
    for count in _batch_sizes(seed):
        buffer.extend(_steps(written, count))
        written += count
        conn.send(written)


def _assert_consistent(storage, reported: int, ends: set[int]) -> int:
    """Every stored item whole and in ring order, nothing reported lost; returns the newest step."""
    length, last = len(storage), storage._last_cursor
    rows = storage.get(torch.arange(length))
    step = rows["step"]
    assert torch.equal(rows["obs"], step.double().unsqueeze(-1).expand(length, 16)), "an item mixes two writes"
    assert torch.equal(rows["next", "obs"], rows["obs"] + 1)
    assert torch.equal(rows["next", "reward"], step.float())
    assert torch.equal(rows["even"].squeeze(-1), step % 2 == 0)
    newest = int(step[last])
    assert newest + 1 in ends, "the bookkeeping counts part of a write"
    assert newest + 1 >= reported, "a write reported finished was lost"
    assert torch.equal(step % _RING, torch.arange(length)), "an item sits at the wrong ring position"
    assert bool(((step > newest - _RING) & (step <= newest)).all()), "a stale item is counted"
    assert length == min(newest + 1, _RING)
    return newest


@pytest.mark.slow
def test_a_memmap_write_killed_at_a_random_instant_reopens_whole_or_names_the_torn_items(tmp_path):
    trials, outcomes = 40, {"reopened whole": 0, "refused, torn items named": 0}
    for trial in range(trials):
        rng = random.Random(2000 + trial)
        folder = tmp_path / f"trial_{trial}"
        receiver, sender = _FORK.Pipe(duplex=False)
        child = _FORK.Process(target=_run_child, args=(_extending, str(folder), trial, sender), daemon=True)
        child.start()
        sender.close()
        assert receiver.poll(60), "the child never finished its first write"
        time.sleep(rng.uniform(0.0, 0.03))  # the ring of 256 wraps within milliseconds: overwrites are killed too
        os.kill(child.pid, signal.SIGKILL)
        _assert_gone(child)
        reported = 0
        while receiver.poll(0):
            try:
                reported = receiver.recv()
            except (EOFError, OSError):
                break
        ends, total = set(), 0
        for count in _batch_sizes(trial):
            total += count
            ends.add(total)
            if total > reported + 1000:
                break
        try:
            storage, error = LazyMemmapStorage.open(folder), ""
        except ValueError as err:
            storage, error = None, str(err)
        if storage is None:
            match = re.search(r"stopped while it overwrote items (\d+)\.\.(\d+)", error)
            assert match, f"trial {trial}: not a clear error: {error}"
            assert 0 <= int(match[1]) <= int(match[2]) < _RING
            outcomes["refused, torn items named"] += 1
            LazyMemmapStorage(_RING, scratch_dir=folder, existsok=True).set(slice(0, 2), _steps(0, 2))  # refill works
            continue
        newest = _assert_consistent(storage, reported, ends)
        resumed = ReplayBuffer(storage=storage).extend(_steps(newest + 1, 3))  # writing resumes after the newest
        assert resumed.tolist() == [(newest + 1 + i) % _RING for i in range(3)]
        outcomes["reopened whole"] += 1
    print(f"\nmemmap extend() killed at random instants: {trials} trials, {outcomes}")
    assert outcomes["reopened whole"] > 0
