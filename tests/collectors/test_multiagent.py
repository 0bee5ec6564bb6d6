"""Group keys through rollouts and collectors: a multi-agent env's ``"agents"`` group reaches the policy every step."""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from tdrl.collectors import MultiaSyncDataCollector as _MultiaSync
from tdrl.collectors import MultiSyncDataCollector as _MultiSync
from tdrl.collectors import SyncDataCollector
from tdrl.envs import ParallelEnv as _ParallelEnv
from tdrl.envs import SerialEnv, step_mdp
from tdrl.testing import MultiAgentNavigationMock

# fork explicitly: importing torchrl elsewhere in the suite makes "spawn" the default (slow to start)
MultiSyncDataCollector = functools.partial(_MultiSync, mp_start_method="fork")
MultiaSyncDataCollector = functools.partial(_MultiaSync, mp_start_method="fork")
ParallelEnv = functools.partial(_ParallelEnv, mp_start_method="fork")

OBS, ACTION, REWARD = ("agents", "observation"), ("agents", "action"), ("agents", "reward")


class _Seeing:
    """A deterministic policy (step toward the target) that counts the calls where the observation was missing."""

    def __init__(self) -> None:
        self.missing = 0

    def __call__(self, td):
        if OBS not in td.keys(True, True):
            self.missing += 1
            raise KeyError(f"the policy got no {OBS}: {sorted(map(str, td.keys(True, True)))}")
        td.set(ACTION, td.get(OBS)[..., 2:].clamp(-1, 1))
        return td


def _policy() -> TensorDictModule:
    return TensorDictModule(lambda obs: obs[..., 2:].clamp(-1, 1), in_keys=[OBS], out_keys=[ACTION])


def _check_chain(batch) -> None:
    """Each step's root is the previous step's ``"next"`` (minus the reward) unless the previous step ended."""
    tdim = batch.ndim - 1
    obs, nxt = batch.get(OBS), batch.get(("next", *OBS))
    done = batch.get(("next", "done")).squeeze(-1)
    follows = ~done.narrow(tdim, 0, batch.shape[tdim] - 1)
    later, earlier = obs.narrow(tdim, 1, obs.shape[tdim] - 1), nxt.narrow(tdim, 0, obs.shape[tdim] - 1)
    assert torch.equal(later[follows], earlier[follows]), "the group's observation was not carried to the next step"
    assert REWARD not in batch.keys(True, True), "the reward leaked into the next step's root"
    assert batch.get("agents").batch_size == (*batch.batch_size, 2)


def test_step_mdp_drops_only_the_group_reward():
    env = MultiAgentNavigationMock(n_agents=2)
    td = env.reset()
    td.set(ACTION, torch.zeros(2, 2))
    td = env.step(td)
    root = step_mdp(td, reward_keys=env.reward_keys)
    assert torch.equal(root.get(OBS), td.get(("next", *OBS)))
    assert REWARD not in root.keys(True, True)
    assert ("agents", "done") in root.keys(True, True)


@pytest.mark.parametrize("batch_size", [(), (3,)])
def test_rollout_carries_the_group(batch_size):
    env = MultiAgentNavigationMock(n_agents=2, max_steps=4, batch_size=batch_size)
    policy = _Seeing()
    data = env.rollout(12, policy, break_when_any_done=False)
    assert policy.missing == 0
    assert data.batch_size == (*batch_size, 12)
    _check_chain(data)


@pytest.mark.parametrize("batch_size", [(), (2,)])
def test_sync_collector_equals_rollout(batch_size):
    policy = _policy()
    collector = SyncDataCollector(
        MultiAgentNavigationMock(max_steps=5, batch_size=batch_size), policy, frames_per_batch=20, total_frames=20
    )
    batch = next(iter(collector))
    _check_chain(batch)
    # the collector validates one step from a reset, then starts from a second reset: the reference does the same
    reference_env = MultiAgentNavigationMock(max_steps=5, batch_size=batch_size)
    reference_env.reset()
    steps = 20 // max(1, reference_env.batch_size.numel())
    reference = reference_env.rollout(steps, policy, break_when_any_done=False)
    assert set(batch.exclude("collector").keys(True, True)) == set(reference.keys(True, True))
    assert (batch.exclude("collector") == reference).all()


def test_sync_collector_random_actions_and_batched_envs():
    def make():
        return MultiAgentNavigationMock(max_steps=3)

    for env in (SerialEnv(2, make), ParallelEnv(2, make)):
        collector = SyncDataCollector(env, _policy(), frames_per_batch=16, total_frames=32, init_random_frames=16)
        batches = list(collector)
        collector.shutdown()
        for batch in batches:
            assert batch.batch_size == (2, 8)
            _check_chain(batch)


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_multiprocess_collectors_carry_the_group(cls):
    def make():
        return MultiAgentNavigationMock(max_steps=4)

    collector = cls([make, make], _policy(), frames_per_batch=16, total_frames=32)
    try:
        for batch in collector:
            assert batch.get(("next", *REWARD)).shape[-2:] == (2, 1)
            flat = batch.reshape(-1)
            ids = flat.get(("collector", "traj_ids"))
            # within one trajectory, each root observation is the previous step's next observation
            same = ids[1:] == ids[:-1]
            assert torch.equal(flat.get(OBS)[1:][same], flat.get(("next", *OBS))[:-1][same])
            assert REWARD not in batch.keys(True, True)
    finally:
        collector.shutdown()


def test_group_batch_dims_survive_a_reset_of_some_envs():
    env = MultiAgentNavigationMock(n_agents=3, batch_size=(2,))
    td = env.reset()
    before = td.get(OBS).clone()
    again = env.reset(td.clone().set("_reset", torch.tensor([[True], [False]])))
    assert torch.equal(again.get(OBS)[1], before[1])
    assert not torch.equal(again.get(OBS)[0], before[0])
    assert isinstance(again.get("agents"), TensorDict)
