"""ParallelEnv workers over GymEnv write each step into the shared buffers directly: the same data as SerialEnv."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.envs import ParallelEnv, SerialEnv
from tdrl.envs._parallel_worker import _Worker
from tdrl.envs.common import EnvBase
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.transforms import RewardScaling, TransformedEnv

pytest.importorskip("gymnasium")

PEnv = functools.partial(ParallelEnv, mp_start_method="fork")


class _DoubledReward(GymEnv):
    """A GymEnv subclass with its own ``_step``: the workers must run it, not the array writer."""

    def _step(self, tensordict):
        out = super()._step(tensordict)
        out.set("reward", out.get("reward") * 2)
        return out


def _cartpole_policy(categorical: bool) -> TensorDictModule:
    def act(obs: torch.Tensor) -> torch.Tensor:
        index = (obs[..., 2] + obs[..., 3] < 0).long()  # push the cart away from the pole: short episodes
        return index if categorical else torch.nn.functional.one_hot(index, 2)

    return TensorDictModule(act, in_keys=["observation"], out_keys=["action"])


def _pendulum_policy() -> TensorDictModule:
    return TensorDictModule(lambda obs: obs[..., :1].tanh() * 2, in_keys=["observation"], out_keys=["action"])


CASES = {
    "box": (functools.partial(GymEnv, "Pendulum-v1"), _pendulum_policy()),
    "one-hot": (functools.partial(GymEnv, "CartPole-v1"), _cartpole_policy(False)),
    "categorical": (
        functools.partial(GymEnv, "CartPole-v1", categorical_action_encoding=True),
        _cartpole_policy(True),
    ),
    "own _step": (functools.partial(_DoubledReward, "CartPole-v1"), _cartpole_policy(False)),
}


def _collect(cls, make, policy) -> TensorDict:
    env = cls(2, make)
    try:
        env.set_seed(3)
        collector = SyncDataCollector(env, policy, frames_per_batch=300, total_frames=600)
        data = torch.cat([batch.clone() for batch in collector], dim=-1)
        collector.shutdown()
        return data
    finally:
        env.close()


@pytest.mark.parametrize("case", list(CASES))
def test_parallel_collects_what_serial_collects(case):
    make, policy = CASES[case]
    serial = _collect(SerialEnv, make, policy)
    parallel = _collect(PEnv, make, policy)
    assert set(serial.keys(True, True)) == set(parallel.keys(True, True))
    for key in serial.keys(True, True):
        assert torch.equal(serial[key], parallel[key]), key
    if case != "box":
        assert int(serial["next", "done"].sum()) >= 4  # episodes ended and the workers reset their copies
    if case == "own _step":
        assert set(serial["next", "reward"].unique().tolist()) == {2.0}  # the subclass's step ran


def _worker(env) -> _Worker:
    """A worker over ``env`` in this process, with buffers laid out as ParallelEnv's, after its first (checked) step."""
    leaves = env.full_observation_spec.clone().update(env.full_reward_spec).update(env.full_done_spec)
    inp = {k: env.full_action_spec[k].zero().unsqueeze(0) for k in env.action_keys}
    inp["_reset"] = torch.zeros(1, 1, dtype=torch.bool)
    nxt = {k: leaves[k].zero().unsqueeze(0) for k in leaves.keys(True, True)}
    root = {k: v.clone() for k, v in nxt.items() if k not in env.reward_keys}
    worker = _Worker(0, env)
    worker.handle("buffers", (inp, nxt, root, None))
    worker.handle("reset", {})
    worker.handle("step_reset", None)
    return worker


def test_the_array_writer_is_used_only_for_a_plain_gym_env():
    plain = _worker(GymEnv("Pendulum-v1"))
    assert plain.writer is not None
    assert _worker(_DoubledReward("Pendulum-v1")).writer is None
    assert _worker(TransformedEnv(GymEnv("Pendulum-v1"), RewardScaling(0.0, 2.0))).writer is None
    # the written step: the shared arrays hold what gymnasium returned for the shared action
    plain.inp["action"].fill_(0.5)
    obs_before = plain.next[0][1].clone()
    assert plain.handle("step_reset", None) is False
    nxt = dict(plain.next)
    assert not torch.equal(nxt["observation"], obs_before)
    assert nxt["reward"].dtype == torch.float32
    assert nxt["reward"].shape == (1,)
    assert not bool(nxt["done"])
    assert not bool(nxt["terminated"])


class _Forwarding(EnvBase):
    """A wrapper that forwards every missing attribute, private ones included, to a GymEnv inside."""

    def __init__(self):
        inner = GymEnv("Pendulum-v1")
        super().__init__(batch_size=inner.batch_size)
        self.inner = inner
        self.full_observation_spec = inner.full_observation_spec.clone()
        self.full_action_spec = inner.full_action_spec.clone()
        self.full_reward_spec = inner.full_reward_spec.clone()
        self.full_done_spec = inner.full_done_spec.clone()

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)

    def _reset(self, tensordict=None, **kwargs):
        return self.inner._reset(tensordict, **kwargs)

    def _step(self, tensordict):
        out = self.inner._step(tensordict)
        out.set("reward", out.get("reward") + 100)
        return out

    def _set_seed(self, seed):
        return self.inner._set_seed(seed)


def test_a_wrapper_forwarding_private_names_does_not_lend_the_inner_step():
    worker = _worker(_Forwarding())
    assert worker.writer is None
    worker.handle("step_reset", None)
    assert float(dict(worker.next)["reward"]) >= 90.0  # the wrapper's own step ran


def test_lean_writer_refuses_other_layouts():
    env = GymEnv("Pendulum-v1")
    arrays = {k: np.zeros(1) for k in ("observation", "reward", "terminated", "truncated", "done")}
    assert env._lean_writer(arrays) is not None
    assert env._lean_writer({**arrays, "extra": np.zeros(1)}) is None
    assert GymEnv("Pendulum-v1", frame_skip=2)._lean_writer(arrays) is None
