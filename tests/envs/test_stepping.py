"""The stepping helpers: the collector's garbage-collector pause and the release of recorded steps."""

from __future__ import annotations

import gc

import pytest
import torch

from tdrl.collectors import SyncDataCollector
from tdrl.envs._stepping import ActionRunner, gc_paused, td_from_flat
from tdrl.testing import CountingEnv


def test_gc_paused_restores_the_collector_also_on_error(gc_enabled):
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_gc_paused_is_reentrant_and_keeps_a_disabled_collector_off(gc_enabled):
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves the outer one's setting
    assert gc.isenabled()
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()  # a user who turned it off keeps it off


def test_collector_batches_pause_gc_and_release_their_steps(gc_enabled):
    seen = []

    def policy(td):
        seen.append(gc.isenabled())
        td.set("action", torch.zeros(1, dtype=torch.int64))
        return td

    collector = SyncDataCollector(CountingEnv(max_steps=3), policy, frames_per_batch=5, total_frames=10)
    batches = list(collector)
    collector.shutdown()
    assert [b["next", "observation"].squeeze(-1).tolist() for b in batches] == [[1, 2, 3, 1, 2], [3, 1, 2, 3, 1]]
    assert seen[-10:] == [False] * 10  # every step of both batches ran with the collector paused
    assert gc.isenabled()
    loop = collector._loop
    assert all(not steps for steps in loop.root_slots.lists.values())  # stacked, then let go
    assert all(not steps for steps in loop.next_slots.lists.values())


def test_action_runner_pauses_gc_and_restores_it(gc_enabled):
    env = CountingEnv(max_steps=2)
    states = []
    step = env._step

    def spy(td):
        states.append(gc.isenabled())
        return step(td)

    env._step = spy
    actions = td_from_flat({"action": torch.zeros(3, 1, dtype=torch.int64)}, torch.Size([3]))
    data, _ = ActionRunner(env).run(env.reset(), actions, 3)
    assert data["next", "observation"].squeeze(-1).tolist() == [1.0, 2.0, 1.0]
    assert states
    assert not any(states)
    assert gc.isenabled()
