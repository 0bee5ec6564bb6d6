"""The lane (tdrl/_workers/lane.py): ParallelEnv's steps through shared words and eventfd wake-ups."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time

import pytest
import torch

import tdrl._workers.lane as lane_mod
from tdrl._workers import LANE_AVAILABLE, Lane
from tdrl.envs import ParallelEnv, SerialEnv
from tdrl.testing import CountingEnv, FailingEnv

pytestmark = pytest.mark.skipif(not LANE_AVAILABLE, reason="the lane needs Linux (eventfd, epoll)")

PEnv = functools.partial(ParallelEnv, mp_start_method="fork")


class _SlowStep(CountingEnv):
    """A CountingEnv whose steps take 0.3 s (to stop its worker while it owes a reply)."""

    def _step(self, tensordict):
        time.sleep(0.3)
        return super()._step(tensordict)


class _RingRaises:
    """An eventfd whose ring raises KeyboardInterrupt once, before ringing: the request word is written, unrung."""

    def __init__(self, bell) -> None:
        self.bell, self.fired = bell, False

    def ring(self) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        self.bell.ring()

    def __getattr__(self, name):
        return getattr(self.bell, name)


def _obs(td) -> list:
    return td["next", "observation"].squeeze(-1).tolist()


def test_steps_go_through_the_lane_and_match_serial_env():
    par, ser = (
        PEnv(2, functools.partial(CountingEnv, max_steps=3)),
        SerialEnv(2, functools.partial(CountingEnv, max_steps=3)),
    )
    assert par._lane is not None
    words = par._lane.ctl.clone()
    a, b = par.rollout(7, break_when_any_done=False), ser.rollout(7, break_when_any_done=False)
    assert torch.equal(a["next", "observation"], b["next", "observation"])
    assert torch.equal(a["next", "done"], b["next", "done"])
    # every step of each worker went through the lane: its request and reply counters moved by 7
    assert ((par._lane.ctl >> 4) - (words >> 4)).tolist() == [[7, 7], [7, 7]]
    par.close()


def test_a_request_written_but_not_rung_when_ctrl_c_lands_is_answered_by_the_next_call():
    env = PEnv(2, CountingEnv)
    td = env.reset()
    bell = env._lane.bell
    env._lane.bell = _RingRaises(bell)
    with pytest.raises(KeyboardInterrupt):
        env.rand_step(td)  # the words say "step", no worker was woken
    env._lane.bell = bell
    # the next call rings for the owed step, waits for it, then takes its own
    assert _obs(env.rand_step(td)) == [2.0, 2.0]
    env.close()


def test_a_worker_that_raises_in_a_lane_step_reports_its_traceback_and_the_env_stays_usable():
    env = PEnv(2, functools.partial(FailingEnv, fail_after=2))
    td = env.rand_step(env.reset())["next"].exclude("reward")
    with pytest.raises(RuntimeError, match=r"(?s)worker 0 raised while 'step'.*Traceback.*failing on purpose"):
        env.rand_step(td)
    assert env.reset()["observation"].shape[0] == 2  # the socket protocol still answers
    env.close()


def test_a_worker_killed_during_a_lane_step_is_reported_with_its_exit_code():
    env = PEnv(2, _SlowStep)
    td = env.reset()
    os.kill(env._procs[1].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=r"worker 1 died while 'step' \(exit code -9\)"):
        env.rand_step(td)
    with pytest.raises(RuntimeError, match="cannot be used any more"):
        env.rand_step(td)
    env.close()


def test_a_stopped_worker_times_out_twice_then_the_env_refuses():
    env = PEnv(2, _SlowStep, timeout=0.5)
    td = env.reset()
    pid = env._procs[0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match=r"worker 0 did not answer 'step' within 0\.5 s \(it is stopped"):
            env.rand_step(td)
        # its reply stays owed: the next call waits for it once more, then gives up on it
        with pytest.raises(TimeoutError, match=r"worker 0 did not answer 'step' within 0\.5 s twice in a row"):
            env.rand_step(td)
        with pytest.raises(RuntimeError, match="cannot be used any more"):
            env.rand_step(td)
    finally:
        env.close()  # kills the stopped worker (SIGKILL works on a stopped process)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert not env._procs[0].is_alive()


def test_spinning_sides_give_the_same_data(monkeypatch):
    monkeypatch.setattr(lane_mod, "SPIN_S", 200e-6)
    par = PEnv(2, functools.partial(CountingEnv, max_steps=3))
    monkeypatch.setattr(lane_mod, "SPIN_S", 0.0)
    ser = SerialEnv(2, functools.partial(CountingEnv, max_steps=3))
    assert par._lane.spin == (200e-6 if lane_mod._SPIN_OK else 0.0)
    a, b = par.rollout(9, break_when_any_done=False), ser.rollout(9, break_when_any_done=False)
    assert torch.equal(a["next", "observation"], b["next", "observation"])
    par.close()


def test_a_lane_takes_at_most_16_commands():
    with pytest.raises(ValueError, match="at most 16 commands, got 17"):
        Lane(1, [f"cmd{i}" for i in range(17)])
