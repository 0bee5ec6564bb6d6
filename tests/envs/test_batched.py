"""SerialEnv and ParallelEnv: the env contract, partial resets, seeding, and worker failures."""

from __future__ import annotations

import functools
import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tdrl.envs import ParallelEnv, SerialEnv
from tdrl.envs.common import EnvBase
from tdrl.testing import ContinuousActionMock, CountingEnv, EnvContractTests, FailingEnv, NestedKeyMock

# Importing torchrl (done by other tests of the suite) sets the global start method to "spawn";
# these tests ask for "fork" explicitly to stay fast, and test_spawn_start_method covers spawn.
FORK = "fork"
PEnv = functools.partial(ParallelEnv, mp_start_method=FORK)


class _SlowEnv(CountingEnv):
    """A CountingEnv whose step hangs (to test timeouts)."""

    def _step(self, tensordict):
        time.sleep(30)
        return super()._step(tensordict)


class _SlowSecondStep(CountingEnv):
    """A CountingEnv whose second step takes 0.6 s (to interrupt it while the parent waits), the others 0.05 s.

    A reply that was left in the pipe would then be read at once, before the worker wrote the
    next step's results: a stale result would show.
    """

    def __init__(self, max_steps: int = 100) -> None:
        super().__init__(max_steps=max_steps)

    def _step(self, tensordict):
        time.sleep(0.6 if int(self.count.flatten()[0]) == 1 else 0.05)
        return super()._step(tensordict)


def _bad_factory():
    raise ValueError("no env for you")


class TestSerialContract(EnvContractTests):
    def make_env(self) -> EnvBase:
        return SerialEnv(2, functools.partial(ContinuousActionMock, max_steps=4))


class TestParallelContract(EnvContractTests):
    def make_env(self) -> EnvBase:
        return PEnv(2, functools.partial(ContinuousActionMock, max_steps=4))


class TestParallelNestedContract(EnvContractTests):
    def make_env(self) -> EnvBase:
        return PEnv(2, functools.partial(NestedKeyMock, batch_size=[3]))


@pytest.fixture(params=["serial", "parallel"])
def batched(request):
    cls = SerialEnv if request.param == "serial" else PEnv
    made = []

    def make(*args, **kwargs):
        env = cls(*args, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


def test_batch_size_and_specs(batched):
    env = batched(3, functools.partial(CountingEnv, batch_size=[2]))
    assert env.batch_size == (3, 2)
    assert env.observation_spec["observation"].shape == (3, 2, 1)
    assert env.action_spec.shape == (3, 2, 1)
    td = env.rand_step(env.reset())
    assert td["next", "observation"].shape == (3, 2, 1)


def test_partial_reset(batched):
    env = batched(3, functools.partial(CountingEnv, max_steps=10))
    td = env.reset()
    for _ in range(2):
        td = env.rand_step(td)
        td = td["next"].exclude("reward")
    assert (td["observation"] == 2).all()
    td["_reset"] = torch.tensor([[False], [True], [False]])
    out = env.reset(td)
    assert out["observation"].squeeze(-1).tolist() == [2.0, 0.0, 2.0]
    out = env.rand_step(out)
    assert out["next", "observation"].squeeze(-1).tolist() == [3.0, 1.0, 3.0]


def test_step_and_maybe_reset_resets_only_done_workers(batched):
    env = batched(2, [functools.partial(CountingEnv, max_steps=2), functools.partial(CountingEnv, max_steps=3)])
    root = env.reset()
    seen = []
    for _ in range(4):
        td, root = env.step_and_maybe_reset(env.rand_action(root))
        seen.append((td["next", "observation"].squeeze(-1).tolist(), root["observation"].squeeze(-1).tolist()))
    assert seen == [
        ([1.0, 1.0], [1.0, 1.0]),
        ([2.0, 2.0], [0.0, 2.0]),
        ([1.0, 3.0], [1.0, 0.0]),
        ([2.0, 1.0], [0.0, 1.0]),
    ]


def test_step_and_maybe_reset_gives_serial_envs_entries_with_what_the_policy_wrote():
    make = [functools.partial(CountingEnv, max_steps=2), functools.partial(CountingEnv, max_steps=3)]
    envs = [PEnv(2, make), SerialEnv(2, make)]
    roots = [env.reset() for env in envs]
    for t in range(5):
        outs = []
        for i, env in enumerate(envs):
            td = env.rand_action(roots[i])
            td["action"] = torch.ones_like(td["action"])
            td["hidden"] = torch.full((2, 3), float(t))  # a policy's extra entry: carried to the next root
            td, roots[i] = env.step_and_maybe_reset(td)
            outs.append((td, roots[i]))
        (ptd, proot), (std, sroot) = outs
        assert set(ptd.keys(True)) == set(std.keys(True))
        assert set(proot.keys(True)) == set(sroot.keys(True))
        assert (ptd == std).all()
        assert (proot == sroot).all()
        assert "action" not in proot.keys()
        assert "reward" not in proot.keys()
        assert (proot["hidden"] == t).all()
    for env in envs:
        env.close()


def test_step_and_maybe_reset_sub_batched(batched):
    env = batched(2, [functools.partial(CountingEnv, max_steps=2, batch_size=[2])] * 2)
    root = env.reset()
    td, root = env.step_and_maybe_reset(env.rand_action(root))
    td, root = env.step_and_maybe_reset(env.rand_action(root))
    assert (td["next", "done"]).all()
    assert (root["observation"] == 0).all()


def test_same_seed_same_data_serial_and_parallel():
    data = []
    for cls in (SerialEnv, PEnv):
        env = cls(2, functools.partial(ContinuousActionMock, max_steps=3))
        assert env.set_seed(7) == 9
        torch.manual_seed(0)
        data.append(env.rollout(6, break_when_any_done=False))
        env.close()
    serial, parallel = data
    for key in serial.keys(True, True):
        assert torch.equal(serial[key], parallel[key]), key
    # the two workers got different seeds: their observations differ
    assert not torch.equal(serial["observation"][0], serial["observation"][1])


def test_gym_workers(batched):
    from tdrl.envs.libs.gym import GymEnv

    env = batched(2, functools.partial(GymEnv, "Pendulum-v1"))
    env.set_seed(0)
    ro = env.rollout(5, break_when_any_done=False)
    assert ro["next", "observation"].shape == (2, 5, 3)
    assert ro["next", "observation"].dtype == torch.float32


def test_bad_factories():
    with pytest.raises(TypeError, match="instance"):
        SerialEnv(2, CountingEnv())
    with pytest.raises(TypeError, match="instance"):
        PEnv(2, CountingEnv())
    with pytest.raises(ValueError, match="num_workers"):
        SerialEnv(0, CountingEnv)
    with pytest.raises(ValueError, match="differs from worker 0"):
        SerialEnv(2, [CountingEnv, functools.partial(CountingEnv, batch_size=[2])])
    with pytest.raises(ValueError, match="differs from worker 0"):
        PEnv(2, [CountingEnv, ContinuousActionMock])


def test_factory_that_raises_fails_construction():
    with pytest.raises(ValueError, match="no env for you"):
        SerialEnv(2, _bad_factory)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="no env for you"):
        PEnv(2, _bad_factory)
    assert time.monotonic() - start < 30


def test_worker_exception_reaches_parent_with_traceback():
    env = PEnv(2, functools.partial(FailingEnv, fail_after=2))
    procs = list(env._procs)
    td = env.reset()
    td = env.rand_step(td)["next"].exclude("reward")
    with pytest.raises(
        RuntimeError, match=r"(?s)worker 0 raised.*FailingEnv: failing on purpose.*Traceback|Traceback.*FailingEnv"
    ):
        env.rand_step(td)
    env.close()
    env.close()  # idempotent
    assert not any(p.is_alive() for p in procs)
    assert env.is_closed


def test_closed_env_restarts_on_use_as_torchrl_does():
    env = PEnv(2, functools.partial(CountingEnv, max_steps=3))
    env.set_seed(0)
    first = env.rollout(5, break_when_any_done=False)
    old = list(env._procs)
    env.close()
    assert env.is_closed
    assert not any(p.is_alive() for p in old)
    with pytest.raises(AttributeError):  # a look-up never starts processes
        env.some_sub_env_attribute  # noqa: B018
    assert env.is_closed
    again = env.rollout(5, break_when_any_done=False)  # rollout resets first: new workers
    assert not env.is_closed
    assert all(p.is_alive() for p in env._procs)
    assert not set(env._procs) & set(old)
    obs = ("next", "observation")
    assert torch.equal(again[obs], first[obs])
    assert again[obs].max() == 3
    pids = [p.pid for p in env._procs]
    env.start()  # a running env is left as it is
    assert [p.pid for p in env._procs] == pids
    env.close()
    assert env.set_seed(0) == 2  # seeding restarts it too
    assert torch.equal(env.rollout(5, break_when_any_done=False)[obs], first[obs])
    env.close()


def test_dead_worker_then_close_then_reset_starts_afresh():
    env = PEnv(2, CountingEnv)
    td = env.rand_step(env.reset())["next"].exclude("reward")
    os.kill(env._procs[1].pid, signal.SIGKILL)
    env._procs[1].join(5)
    with pytest.raises(RuntimeError, match=r"died.*|cannot be used"):
        env.rand_step(td)
    with pytest.raises(RuntimeError, match=r"close\(\) and use it again"):
        env.reset()
    env.close()
    td = env.reset()
    assert td["observation"].shape == (2, 1)
    env.close()


def test_dead_worker_is_reported():
    env = PEnv(2, CountingEnv)
    td = env.reset()
    os.kill(env._procs[1].pid, signal.SIGKILL)
    env._procs[1].join(5)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="worker 1 died"):
        env.rand_step(td)
    assert time.monotonic() - start < 10
    env.close()


def test_hanging_worker_times_out():
    env = PEnv(1, _SlowEnv, timeout=0.5)
    td = env.reset()
    with pytest.raises(TimeoutError, match="did not answer"):
        env.rand_step(td)
    procs = list(env._procs)
    env.close()
    assert not any(p.is_alive() for p in procs)


def test_a_step_after_a_timeout_gets_its_own_result_not_the_late_one():
    env = PEnv(1, _SlowSecondStep, timeout=0.2)
    td = env.reset()
    assert env.rand_step(td)["next", "observation"].item() == 1
    with pytest.raises(TimeoutError, match=r"worker 0 did not answer 'step' within 0\.2 s"):
        env.rand_step(td)
    time.sleep(0.8)  # the slow step ends meanwhile: the next call would wait 0.2 s more for it anyway
    # the late reply (observation 2) is drained, not handed to the next step
    assert env.rand_step(td)["next", "observation"].item() == 3
    assert env.rand_step(td)["next", "observation"].item() == 4
    env.close()


@pytest.mark.parametrize("call", ["step", "step_and_maybe_reset", "rollout_actions"])
def test_a_call_interrupted_by_ctrl_c_is_resynchronized(call, ctrl_c_after):
    env = PEnv(2, _SlowSecondStep)
    td = env.reset()
    assert env.rand_step(td)["next", "observation"].squeeze(-1).tolist() == [1.0, 1.0]
    calls = {
        "step": lambda: env.rand_step(td),
        "step_and_maybe_reset": lambda: env.step_and_maybe_reset(env.rand_action(td)),
        "rollout_actions": lambda: env._rollout_actions(td, _actions(env, 3)),
    }
    with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.2):  # while the workers sleep in their 2nd step
        calls[call]()
    # the interrupted call's replies are drained: the next results are the next call's own
    if call == "rollout_actions":
        # the same length: the output buffers of the interrupted run are handed over now
        data, _ = env._rollout_actions(td, _actions(env, 3))
        assert data["next", "observation"].squeeze(-1).tolist() == [[5.0, 6.0, 7.0]] * 2
    else:
        assert env.rand_step(td)["next", "observation"].squeeze(-1).tolist() == [3.0, 3.0]
    assert env.reset()["observation"].squeeze(-1).tolist() == [0.0, 0.0]
    env.close()


def _actions(env, steps: int):
    return env.full_action_spec.zero().unsqueeze(-1).expand(*env.batch_size, steps).clone()


def _socket_steps(env):
    """``env`` with its steps sent over the sockets (as where the OS has no lane): these tests cut socket calls."""
    env._lane = None
    return env


class _InterruptAfter:
    """A worker's socket whose ``method`` raises KeyboardInterrupt once, right after doing its work."""

    def __init__(self, sock, method: str, when=lambda *args: True) -> None:
        self.sock, self.method, self.when, self.fired = sock, method, when, False

    def __getattr__(self, name):
        attr = getattr(self.sock, name)
        if name != self.method:
            return attr

        def call(*args):
            result = attr(*args)
            if not self.fired and self.when(*args):
                self.fired = True
                raise KeyboardInterrupt
            return result

        return call


def test_a_reply_consumed_when_ctrl_c_lands_is_not_lost():
    env = _socket_steps(PEnv(2, CountingEnv))
    td = env.reset()
    sock = env._workers.socks[1]
    # Ctrl-C lands right after worker 1's reply was taken off its socket (not a peek)
    env._workers.socks[1] = _InterruptAfter(sock, "recv", lambda size, flags=0: not flags & socket.MSG_PEEK)
    with pytest.raises(KeyboardInterrupt):
        env.rand_step(td)
    env._workers.socks[1] = sock
    assert env.rand_step(td)["next", "observation"].squeeze(-1).tolist() == [2.0, 2.0]
    env.close()


def test_a_request_sent_when_ctrl_c_lands_is_settled():
    env = _socket_steps(PEnv(2, CountingEnv))
    td = env.reset()
    sock = env._workers.socks[0]
    env._workers.socks[0] = _InterruptAfter(sock, "send")  # sent, but the parent cannot know it
    with pytest.raises(KeyboardInterrupt):
        env.rand_step(td)
    env._workers.socks[0] = sock
    # worker 0 took the step, worker 1 was never asked: a sync request settles which
    assert env.rand_step(td)["next", "observation"].squeeze(-1).tolist() == [2.0, 1.0]
    env.close()


def test_a_large_message_cut_half_way_makes_the_env_refuse_further_use():
    env = PEnv(2, CountingEnv)
    td = env.reset()
    procs = list(env._procs)
    sock = env._workers.socks[1]

    class CutHalfWay:
        def __getattr__(self, name):
            return getattr(sock, name)

        def sendall(self, data):
            sock.send(data[: len(data) // 2])
            raise KeyboardInterrupt

    env._workers.socks[1] = CutHalfWay()
    with pytest.raises(KeyboardInterrupt):  # (tdrl's own messages are small: none takes this path)
        env._workers.send(1, "seed", b"x" * 1_000_000)
    env._workers.socks[1] = sock
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"cannot be used any more: .*message to worker 1 half-way"):
            env.rand_step(td)
    env.close()
    assert not any(p.is_alive() for p in procs)


def test_a_dead_worker_makes_the_env_refuse_further_use():
    env = PEnv(2, CountingEnv)
    td = env.reset()
    os.kill(env._procs[0].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="worker 0 died while 'step' \\(exit code -9\\)"):
        env.rand_step(td)
    with pytest.raises(RuntimeError, match="cannot be used any more: worker 0 died"):
        env.reset()
    env.close()
    assert not any(p.is_alive() for p in env._procs)


def test_a_stopped_worker_times_out_then_the_env_refuses_further_use():
    env = PEnv(2, CountingEnv, timeout=0.3)
    td = env.reset()
    procs = list(env._procs)
    os.kill(procs[1].pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match=r"worker 1 did not answer 'step' within 0.3 s \(it is stopped"):
            env.rand_step(td)
        with pytest.raises(TimeoutError, match="twice in a row"):
            env.rand_step(td)  # first waits once more for the owed reply
        with pytest.raises(RuntimeError, match="cannot be used any more: worker 1 did not answer"):
            env.rand_step(td)
        env.close()
        assert not any(p.is_alive() for p in procs)
    finally:
        if procs[1].is_alive():
            os.kill(procs[1].pid, signal.SIGCONT)


def test_garbage_collected_env_stops_its_workers():
    env = PEnv(2, CountingEnv)
    procs = list(env._procs)
    del env
    gc.collect()
    for p in procs:
        p.join(10)
    assert not any(p.is_alive() for p in procs)


def test_no_worker_outlives_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent("""
        import os, sys
        from tdrl.envs import ParallelEnv
        from tdrl.testing import CountingEnv
        env = ParallelEnv(2, CountingEnv, mp_start_method="fork")
        env.rollout(2)
        print(" ".join(str(p.pid) for p in env._procs), flush=True)
        os._exit(0)  # no close(), no atexit: the workers must notice on their own
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if _alive(p)]
    assert not alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_spawn_start_method():
    env = ParallelEnv(1, lambda: CountingEnv(max_steps=2), mp_start_method="spawn")
    try:
        ro = env.rollout(3, break_when_any_done=False)
        assert ro["next", "observation"].squeeze(-1).tolist() == [[1.0, 2.0, 1.0]]
    finally:
        env.close()


class _Labelled(CountingEnv):
    """A CountingEnv with a public attribute and a method of its own (TorchRL's tutorial reads both)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label = f"counting-{self.max_steps}"

    def describe(self, suffix: str) -> str:
        return self.label + suffix


def test_sub_env_attributes_and_methods_are_read_from_every_worker(batched):
    env = batched(2, functools.partial(_Labelled, max_steps=7))
    env.start()  # TorchRL's name; the workers already run
    assert env.label == ["counting-7", "counting-7"]
    assert env.describe("!") == ["counting-7!", "counting-7!"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        _ = env.no_such_thing
    assert getattr(env, "no_such_thing", None) is None


def test_a_collector_restarts_a_closed_env_on_the_open_loop_road():
    from tdrl.collectors import SyncDataCollector

    env = PEnv(2, functools.partial(CountingEnv, max_steps=3))
    first = next(iter(SyncDataCollector(env, None, frames_per_batch=8, total_frames=8)))
    env.close()
    collector = SyncDataCollector(env, None, frames_per_batch=8, total_frames=8)  # random actions: open loop
    again = next(iter(collector))
    collector.shutdown()
    assert not env.is_closed
    assert torch.equal(again["next", "observation"], first["next", "observation"])
    env.close()
