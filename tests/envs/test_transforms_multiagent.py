"""Transforms on a multi-agent env: group keys such as ``("agents", "observation")`` in and out."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.envs import (
    CatTensors,
    DoubleToFloat,
    InitTracker,
    ObservationNorm,
    RewardSum,
    StepCounter,
    TransformedEnv,
    VecNorm,
    check_env_specs,
)
from tdrl.objectives.value import GAE
from tdrl.testing import MultiAgentNavigationMock

OBS, ACTION, REWARD = ("agents", "observation"), ("agents", "action"), ("agents", "reward")


def _policy() -> TensorDictModule:
    return TensorDictModule(lambda obs: obs[..., 2:].clamp(-1, 1) * 0.5, in_keys=[OBS], out_keys=[ACTION])


def _rollouts(transform, steps: int = 12, **env_kwargs):
    """The same seeded rollout without and with ``transform``."""
    kwargs = {"n_agents": 3, "batch_size": (4,), "max_steps": 5, **env_kwargs}
    raw_env = MultiAgentNavigationMock(**kwargs)
    raw_env.set_seed(7)
    env = TransformedEnv(MultiAgentNavigationMock(**kwargs), transform)
    check_env_specs(env)
    env.set_seed(7)
    raw = raw_env.rollout(steps, _policy(), break_when_any_done=False)
    return raw, env.rollout(steps, _policy(), break_when_any_done=False), env


def test_observation_norm_on_a_group_key():
    raw, data, _ = _rollouts(ObservationNorm(loc=0.5, scale=2.0, in_keys=[OBS]))
    # the policy reads normalised observations here, so compare only the first step's (same reset draws)
    torch.testing.assert_close(data.get(OBS)[:, 0], raw.get(OBS)[:, 0] * 2.0 + 0.5)


def test_observation_norm_stats_from_a_group_key():
    env = TransformedEnv(MultiAgentNavigationMock(n_agents=3, batch_size=(8,)), ObservationNorm(in_keys=[OBS]))
    env.transform.init_stats(num_iter=30, reduce_dim=(0, 1, 2), cat_dim=1)
    assert env.transform.loc.shape == (4,)
    data = env.rollout(30, break_when_any_done=False)
    normalised = data.get(("next", *OBS)).reshape(-1, 4)
    assert normalised.mean(0).abs().max() < 0.5
    assert ((normalised.std(0) - 1).abs() < 0.5).all()


def test_reward_sum_per_agent_resets_with_the_episode():
    transform = RewardSum(in_keys=[REWARD], out_keys=[("agents", "episode_reward")], reset_keys=["_reset"])
    raw, data, _ = _rollouts(transform, steps=15)
    reward = raw.get(("next", *REWARD))
    done = raw.get(("next", "done"))  # [4, 15, 1]: every agent's episode ends with the env's
    expected = torch.zeros_like(reward)
    running = torch.zeros_like(reward[:, 0])
    for t in range(reward.shape[1]):
        running = running + reward[:, t]
        expected[:, t] = running
        running = running * (~done[:, t]).unsqueeze(-1)
    torch.testing.assert_close(data.get(("next", "agents", "episode_reward")), expected)
    assert torch.equal(data.get(("next", *REWARD)), reward)


def test_reward_sum_reset_keys_must_match_in_keys():
    with pytest.raises(ValueError, match="one reset key per reward"):
        RewardSum(in_keys=[REWARD], reset_keys=["_reset", ("agents", "_reset")])


def test_step_counter_truncation_ends_every_agent():
    _, data, _ = _rollouts(StepCounter(max_steps=3), steps=9, max_steps=100, radius=0.0)
    count = data.get(("next", "step_count")).squeeze(-1)
    assert torch.equal(count[0], torch.tensor([1, 2, 3] * 3))
    truncated = data.get(("next", "truncated")).squeeze(-1)
    assert torch.equal(truncated, count == 3)
    agents_done = data.get(("next", "agents", "done")).squeeze(-1)
    assert torch.equal(agents_done, truncated.unsqueeze(-1).expand_as(agents_done))
    assert torch.equal(data.get(("next", "agents", "truncated")).squeeze(-1), agents_done)


def test_step_counter_truncation_stops_per_agent_bootstrapping():
    env = TransformedEnv(MultiAgentNavigationMock(n_agents=2, max_steps=100, radius=0.0), StepCounter(max_steps=4))
    batch = next(iter(SyncDataCollector(env, _policy(), frames_per_batch=8, total_frames=8)))
    value = TensorDictModule(lambda obs: obs[..., :1], in_keys=[OBS], out_keys=[("agents", "state_value")])
    gae = GAE(gamma=1.0, lmbda=1.0, value_network=value)
    gae.set_keys(reward=REWARD, done=("agents", "done"), terminated=("agents", "terminated"))
    gae.set_keys(value=("agents", "state_value"), advantage=("agents", "adv"), value_target=("agents", "target"))
    out = gae(batch)
    # truncated (not terminated) at step 4: the target bootstraps from the next value there, not from step 5
    target, reward = out.get(("agents", "target")), batch.get(("next", *REWARD))
    next_value = batch.get(("next", *OBS))[..., :1]
    torch.testing.assert_close(target[3], reward[3] + next_value[3])


def test_max_frames_per_traj_ends_every_agent():
    env = MultiAgentNavigationMock(n_agents=2, max_steps=100, radius=0.0)
    collector = SyncDataCollector(env, _policy(), frames_per_batch=6, total_frames=6, max_frames_per_traj=3)
    batch = next(iter(collector))
    truncated = batch.get(("next", "truncated")).squeeze(-1)
    assert torch.equal(truncated, torch.tensor([False, False, True] * 2))
    agents_done = batch.get(("next", "agents", "done")).squeeze(-1)
    assert torch.equal(agents_done, truncated.unsqueeze(-1).expand_as(agents_done))


def test_double_to_float_on_a_group_key():
    class DoubleObs(MultiAgentNavigationMock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            spec = self.full_observation_spec[OBS]
            self.observation_spec[OBS] = spec.to(torch.float64) if hasattr(spec, "to") else spec

        def _step(self, tensordict):
            out = super()._step(tensordict)
            out.set(OBS, out.get(OBS).double())
            return out

        def _reset(self, tensordict, **kwargs):
            out = super()._reset(tensordict, **kwargs)
            out.set(OBS, out.get(OBS).double())
            return out

    env = TransformedEnv(DoubleObs(n_agents=2), DoubleToFloat(in_keys=[OBS]))
    data = env.rollout(3, _policy())
    assert data.get(("next", *OBS)).dtype == torch.float32
    assert env.full_observation_spec[OBS].dtype == torch.float32


def test_cat_tensors_inside_a_group():
    transform = CatTensors(
        in_keys=[OBS, ("agents", "last")], out_key=("agents", "features"), del_keys=False, sort=False
    )

    class WithLast(MultiAgentNavigationMock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.observation_spec["agents", "last"] = self.full_observation_spec[OBS].clone()

        def _step(self, tensordict):
            out = super()._step(tensordict)
            out.set(("agents", "last"), tensordict.get(OBS).clone())
            return out

        def _reset(self, tensordict, **kwargs):
            out = super()._reset(tensordict, **kwargs)
            out.set(("agents", "last"), out.get(OBS).clone())
            return out

    env = TransformedEnv(WithLast(n_agents=3, batch_size=(2,)), transform)
    check_env_specs(env)
    data = env.rollout(4, _policy())
    features = data.get(("next", "agents", "features"))
    assert features.shape == (2, 4, 3, 8)
    torch.testing.assert_close(features[..., :4], data.get(("next", *OBS)))
    torch.testing.assert_close(features[..., 4:], data.get(OBS))


def test_init_tracker_with_a_group():
    _, data, _ = _rollouts(InitTracker(), steps=10)
    is_init = data.get("is_init").squeeze(-1)
    done = data.get(("next", "done")).squeeze(-1)
    assert is_init[:, 0].all()
    assert torch.equal(is_init[:, 1:], done[:, :-1])


def test_vec_norm_on_a_group_key():
    env = TransformedEnv(MultiAgentNavigationMock(n_agents=3, batch_size=(8,)), VecNorm(in_keys=[OBS]))
    data = env.rollout(40, break_when_any_done=False)
    late = data.get(("next", *OBS))[:, 20:].reshape(-1, 3, 4)
    assert torch.isfinite(late).all()
    assert 0.5 < late.std() < 2.0  # normalised: the raw positions and offsets spread over [-2, 2]
