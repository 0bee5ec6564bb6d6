"""Differential tests against TorchRL 0.14.1: ActionMask, DiscreteActionProjection, ActionDiscretizer,
Reward2GoTransform, TargetReturn, BurnInTransform, gSDENoise/gSDEModule, NextObservationDelta and
NextStateReconstructor give TorchRL's results on the same data (where the result is deterministic)."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict

torchrl = pytest.importorskip("torchrl")

import torchrl.data as rl_specs  # noqa: E402
import torchrl.envs as rl_envs  # noqa: E402
from torchrl.envs.libs.gym import GymEnv as RLGymEnv  # noqa: E402

import tdrl.envs as td_envs  # noqa: E402
import tdrl.specs as td_specs  # noqa: E402
from tdrl.envs.libs.gym import GymEnv  # noqa: E402


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _masked_env(base_cls, specs, n=4):
    """The same board-game mock on either library: each action legal once per episode."""

    class Masked(base_cls):
        def __init__(self):
            super().__init__()
            self.action_spec = specs.Categorical(n)
            self.observation_spec = specs.Composite(
                observation=specs.Unbounded(shape=(n,)), action_mask=specs.Binary(n=n, shape=(n,), dtype=torch.bool)
            )
            self.reward_spec = specs.Unbounded(shape=(1,))
            self.mask = torch.ones(n, dtype=torch.bool)

        def _reset(self, tensordict=None, **kwargs):
            self.mask = torch.ones(n, dtype=torch.bool)
            done = torch.zeros(1, dtype=torch.bool)
            return TensorDict(
                observation=self.mask.float(),
                action_mask=self.mask.clone(),
                done=done,
                terminated=done.clone(),
                truncated=done.clone(),
            )

        def _step(self, tensordict):
            self.mask = self.mask.clone()
            self.mask[tensordict["action"]] = False
            done = (~self.mask.any()).view(1)
            return TensorDict(
                observation=self.mask.float(),
                action_mask=self.mask.clone(),
                reward=torch.ones(1),
                done=done,
                terminated=done.clone(),
                truncated=torch.zeros(1, dtype=torch.bool),
            )

        def _set_seed(self, seed):
            return seed

    return Masked()


def test_action_mask_sets_the_same_spec_masks():
    theirs = rl_envs.TransformedEnv(_masked_env(rl_envs.EnvBase, rl_specs), rl_envs.ActionMask())
    ours = td_envs.TransformedEnv(_masked_env(td_envs.EnvBase, td_specs), td_envs.ActionMask())
    a, b = theirs.reset(), ours.reset()
    assert torch.equal(theirs.action_spec.mask, ours.action_spec.mask)
    for action in [2, 0, 3]:
        a["action"], b["action"] = torch.tensor(action), torch.tensor(action)
        a, b = theirs.step(a), ours.step(b)
        assert torch.equal(theirs.action_spec.mask, ours.action_spec.mask)
        a, b = rl_envs.utils.step_mdp(a), td_envs.step_mdp(b)
    assert ours.action_spec.mask.tolist() == [False, True, False, False]


def test_discrete_action_projection_matches():
    theirs = rl_envs.DiscreteActionProjection(num_actions_effective=3, max_actions=5)
    ours = td_envs.DiscreteActionProjection(num_actions_effective=3, max_actions=5)
    actions = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2, 0]), 5)
    a = theirs.inv(TensorDict(action=actions, batch_size=[5]))["action"]
    b = ours.inv(TensorDict(action=actions, batch_size=[5]))["action"]
    assert torch.equal(a, b)
    assert a.dtype == b.dtype
    data = TensorDict(action=torch.nn.functional.one_hot(torch.tensor([4, 1]), 5), batch_size=[2])
    assert torch.equal(theirs(data.clone())["action"], ours(data.clone())["action"])
    spec_theirs = rl_envs.TransformedEnv(
        _quiet(RLGymEnv, "CartPole-v1", categorical_action_encoding=False),
        rl_envs.DiscreteActionProjection(2, 7),
    ).action_spec
    spec_ours = td_envs.TransformedEnv(
        GymEnv("CartPole-v1", categorical_action_encoding=False), td_envs.DiscreteActionProjection(2, 7)
    ).action_spec
    assert type(spec_theirs).__name__ == type(spec_ours).__name__ == "OneHot"
    assert spec_theirs.shape == spec_ours.shape
    assert spec_theirs.space.n == spec_ours.space.n


@pytest.mark.parametrize("sampling", [0, 1, 2])
@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize(("name", "num_intervals"), [("Pendulum-v1", 5), ("Reacher-v4", torch.tensor([3, 6]))])
def test_action_discretizer_matches(name, num_intervals, sampling, categorical):
    theirs = rl_envs.TransformedEnv(
        _quiet(RLGymEnv, name), rl_envs.ActionDiscretizer(num_intervals, sampling=sampling, categorical=categorical)
    )
    ours = td_envs.TransformedEnv(
        _quiet(GymEnv, name), td_envs.ActionDiscretizer(num_intervals, sampling=sampling, categorical=categorical)
    )
    assert type(theirs.action_spec).__name__ == type(ours.action_spec).__name__
    assert theirs.action_spec.shape == ours.action_spec.shape
    torch.manual_seed(0)
    actions = ours.action_spec.rand((20,))
    # one action at a time: TorchRL's map fails on a batch when the dims have different counts
    a = torch.stack([theirs.transform.inv(TensorDict(action=x))["action"] for x in actions])
    b = torch.stack([ours.transform.inv(TensorDict(action=x))["action"] for x in actions])
    torch.testing.assert_close(a, b)
    batched = ours.transform.inv(TensorDict(action=actions, batch_size=[20]))["action"]
    torch.testing.assert_close(batched, b)
    theirs.close()
    ours.close()


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("shape", [(30,), (3, 12)])
def test_reward2go_matches(gamma, shape):
    from torchrl.envs import Reward2GoTransform as RLReward2Go

    generator = torch.Generator().manual_seed(1)
    done = torch.rand(*shape, 1, generator=generator) < 0.2
    done[..., -1, :] = True
    reward = torch.randn(*shape, 1, generator=generator)
    data = TensorDict({"next": {"reward": reward, "done": done}}, list(shape))
    a = RLReward2Go(gamma, out_keys=["r2g"]).inv(data.clone())["r2g"]
    b = td_envs.Reward2GoTransform(gamma, out_keys=["r2g"]).inv(data.clone())["r2g"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["reduce", "constant"])
def test_target_return_matches(mode):
    theirs = rl_envs.TransformedEnv(_quiet(RLGymEnv, "Pendulum-v1"), rl_envs.TargetReturn(-50.0, mode=mode))
    ours = td_envs.TransformedEnv(_quiet(GymEnv, "Pendulum-v1"), td_envs.TargetReturn(-50.0, mode=mode))
    theirs.set_seed(0)
    ours.set_seed(0)
    ours.reset()  # tdrl seeds at the next reset, TorchRL at once (see test_transforms_torchrl.py)
    actions = torch.rand(25, 1, generator=torch.Generator().manual_seed(0)) * 4 - 2
    steps = iter(actions)

    def policy(td):
        td["action"] = next(steps)
        return td

    a = theirs.rollout(25, policy)
    steps = iter(actions)
    b = ours.rollout(25, policy)
    for key in ["target_return", ("next", "target_return"), ("next", "reward")]:
        torch.testing.assert_close(a[key], b[key], msg=str(key))


def test_burn_in_matches():
    from torchrl.modules import GRUModule as RLGRUModule

    from tdrl.modules import GRUModule

    kwargs = {
        "input_size": 3,
        "hidden_size": 4,
        "in_keys": ["observation", "hidden"],
        "out_keys": ["features", ("next", "hidden")],
        "default_recurrent_mode": True,
    }
    theirs, ours = RLGRUModule(**kwargs), GRUModule(**kwargs)
    ours.gru.load_state_dict(theirs.gru.state_dict())
    generator = torch.Generator().manual_seed(0)
    is_init = torch.zeros(2, 9, 1, dtype=torch.bool)
    is_init[1, 0] = True
    data = TensorDict(
        observation=torch.randn(2, 9, 3, generator=generator),
        hidden=torch.randn(2, 9, 1, 4, generator=generator),
        is_init=is_init,
        batch_size=[2, 9],
    )
    a = rl_envs.BurnInTransform([theirs], burn_in=4)(data.clone())
    b = td_envs.BurnInTransform([ours], burn_in=4)(data.clone())
    assert a.batch_size == b.batch_size
    torch.testing.assert_close(a["hidden"], b["hidden"])
    torch.testing.assert_close(a["observation"], b["observation"])


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_gsde_module_matches(learn_sigma):
    from torchrl.envs.utils import ExplorationType as RLType
    from torchrl.envs.utils import set_exploration_type as rl_set
    from torchrl.modules.models.exploration import gSDEModule as RLgSDE

    from tdrl.modules import gSDEModule

    theirs, ours = RLgSDE(2, 3, learn_sigma=learn_sigma), gSDEModule(2, 3, learn_sigma=learn_sigma)
    assert sorted(theirs.state_dict()) == sorted(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    generator = torch.Generator().manual_seed(0)
    mu, state = torch.randn(4, 2, generator=generator), torch.randn(4, 3, generator=generator)
    eps = torch.randn(4, 2, 3, generator=generator)
    with rl_set(RLType.RANDOM):
        a = theirs(mu, state, eps)
        b = ours(mu, state, eps)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    spec_theirs = rl_envs.gSDENoise(state_dim=3, action_dim=2).primers["_eps_gSDE"]
    assert tuple(spec_theirs.shape) == tuple(td_envs.gSDENoise(state_dim=3, action_dim=2).primers["_eps_gSDE"].shape)


def test_next_observation_delta_matches():
    theirs = rl_envs.TransformedEnv(_quiet(RLGymEnv, "Pendulum-v1"), rl_envs.NextObservationDelta())
    ours = td_envs.TransformedEnv(_quiet(GymEnv, "Pendulum-v1"), td_envs.NextObservationDelta())
    theirs.set_seed(0)
    ours.set_seed(0)
    ours.reset()
    action = torch.tensor([0.5])
    a, b = theirs.reset(), ours.reset()
    a["action"], b["action"] = action, action
    a, b = theirs.step(a), ours.step(b)
    assert torch.equal(a["next", "delta", "observation"], b["next", "delta", "observation"])
    data = TensorDict(
        observation=torch.randn(5, 3), next={"delta": {"observation": torch.randn(5, 3).half()}}, batch_size=[5]
    )
    rebuilt_a = rl_envs.NextObservationDelta(["observation"])(data.clone())
    rebuilt_b = td_envs.NextObservationDelta(["observation"])(data.clone())
    torch.testing.assert_close(rebuilt_a["next", "observation"], rebuilt_b["next", "observation"])


def test_next_state_reconstructor_matches():
    from torchrl.envs.transforms.rb_transforms import NextStateReconstructor as RLReconstructor

    data = TensorDict(
        {
            "observation": torch.arange(10.0).unsqueeze(-1),
            "step_count": torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 5]).unsqueeze(-1),
            "next": {"done": torch.tensor([0, 0, 1, 0, 0, 0, 1, 0, 0, 0]).bool().unsqueeze(-1)},
            "collector": {"traj_ids": torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])},
        },
        [10],
    )
    for kwargs in [{}, {"step_count_key": "step_count"}, {"traj_key": None, "fill_value": -1.0}]:
        a = RLReconstructor(**kwargs)(data.clone())["next", "observation"]
        b = td_envs.NextStateReconstructor(**kwargs)(data.clone())["next", "observation"]
        torch.testing.assert_close(a, b, equal_nan=True)
