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
from tdrl._workers import LANE_AVAILABLE, Lane, WorkerLane
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


def _attached(lane: Lane, i: int) -> WorkerLane:
    worker = WorkerLane()
    worker.attach(lane.handles(i))
    return worker


def _rings(lane: Lane) -> int:
    """How many times the workers rang the parent's eventfd since it was last read (and reads it)."""
    try:
        return os.eventfd_read(lane.answer.fd)
    except BlockingIOError:
        return 0


@pytest.mark.skipif(not lane_mod._SPIN_OK, reason="the last worker rings alone only where stores are seen in order")
def test_only_the_last_worker_of_a_round_rings_the_parent():
    # both workers' sides in this process: the handler answers at once
    lane = Lane(2, ("step",), last_rings=True)
    first, last = _attached(lane, 0), _attached(lane, 1)
    lane.send([0, 1], "step")
    first.run(lambda cmd, arg: None)
    assert _rings(lane) == 0  # worker 1 still owes its reply: it will ring
    last.run(lambda cmd, arg: None)
    assert _rings(lane) == 1
    assert lane.owed() == []
    # a round that asks one worker only: it is the last one
    lane.send([1], "step")
    last.run(lambda cmd, arg: None)
    assert _rings(lane) == 1


def test_every_worker_rings_when_last_rings_is_off():
    lane = Lane(2, ("step",), last_rings=False)
    workers = [_attached(lane, 0), _attached(lane, 1)]
    lane.send([0, 1], "step")
    for worker in workers:
        worker.run(lambda cmd, arg: None)
    assert _rings(lane) == 2


def test_steps_complete_when_no_worker_rings(monkeypatch):
    """Two replies that cross may each miss the other and leave the round unrung: the parent re-reads the words."""
    attach = WorkerLane.attach

    def never_last(self, handles):
        attach(self, handles)
        busy = torch.tensor([[1 << 4, 0]], dtype=torch.int64).numpy()  # a row whose request is never answered
        self._others = [busy[0]]

    monkeypatch.setattr(WorkerLane, "attach", never_last)  # the fork-started workers inherit it
    par = PEnv(2, functools.partial(CountingEnv, max_steps=3))
    ser = SerialEnv(2, functools.partial(CountingEnv, max_steps=3))
    par._lane.last_rings = True  # the parent re-reads the words every RECHECK_S, as on x86
    a, b = par.rollout(7, break_when_any_done=False), ser.rollout(7, break_when_any_done=False)
    assert torch.equal(a["next", "observation"], b["next", "observation"])
    assert torch.equal(a["next", "done"], b["next", "done"])
    par.close()
