"""A2CLoss and ReinforceLoss: formulas, baseline / no baseline, errors, TorchRL parity."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import Categorical, ProbabilisticActor, ValueOperator
from tdrl.objectives import A2CLoss, ReinforceLoss
from tdrl.objectives.value import TD1Estimator
from tdrl.objectives.value.functional import reward2go

OBS, K, B, T = 3, 4, 2, 6


def actor() -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(nn.Linear(OBS, K), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=Categorical,
        return_log_prob=True,
    )


def critic() -> ValueOperator:
    return ValueOperator(nn.Linear(OBS, 1), in_keys=["observation"])


def rollout(policy, seed: int = 0) -> TensorDict:
    """A ``[B, T]`` batch with one episode end in the middle of each row."""
    g = torch.Generator().manual_seed(seed)
    data = TensorDict({"observation": torch.randn(B, T, OBS, generator=g)}, [B, T])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        policy(data)
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    done[:, 2] = True
    data["next"] = TensorDict(
        {
            "observation": torch.randn(B, T, OBS, generator=g),
            "reward": torch.randn(B, T, 1, generator=g),
            "done": done,
            "terminated": done.clone(),
        },
        [B, T],
    )
    return data


def test_a2c_formula():
    pi, v = actor(), critic()
    data = rollout(pi)
    data["advantage"] = torch.randn(B, T, 1)
    data["value_target"] = torch.randn(B, T, 1)
    out = A2CLoss(pi, v, entropy_coef=0.1, critic_coef=0.5, loss_critic_type="l2")(data)
    with torch.no_grad():
        dist = pi.get_dist(data.select("observation"))
        lp = dist.log_prob(data["action"]).unsqueeze(-1)
        value = v(data.select("observation"))["state_value"]
    torch.testing.assert_close(out["loss_objective"].detach(), -(lp * data["advantage"]).mean())
    torch.testing.assert_close(out["loss_critic"].detach(), 0.5 * ((value - data["value_target"]) ** 2).mean())
    torch.testing.assert_close(out["loss_entropy"].detach(), -0.1 * dist.entropy().mean())
    torch.testing.assert_close(out["entropy"], dist.entropy().mean())
    assert set(out.keys()) == set(A2CLoss(pi, v).out_keys)
    sum(out[k] for k in out.keys() if k.startswith("loss_")).backward()
    assert pi.module[0].module.weight.grad is not None
    assert v.module.weight.grad is not None


def test_a2c_computes_the_advantage_when_missing():
    pi, v = actor(), critic()
    data = rollout(pi)
    loss = A2CLoss(pi, v).make_value_estimator("td_lambda", gamma=0.9, lmbda=0.5)
    out = loss(data)
    assert "advantage" not in data.keys()
    assert out["loss_objective"].requires_grad


def test_a2c_does_not_need_log_prob():
    pi, v = actor(), critic()
    data = rollout(pi).exclude("sample_log_prob", "action_log_prob")
    data["advantage"] = torch.randn(B, T, 1)
    data["value_target"] = torch.randn(B, T, 1)
    A2CLoss(pi, v)(data)


def test_reinforce_without_baseline_uses_reward_to_go():
    pi = actor()
    data = rollout(pi)
    loss = ReinforceLoss(pi, gamma=0.9)
    out = loss(data)
    assert list(out.keys()) == ["loss_actor"] == loss.out_keys
    returns = reward2go(data["next", "reward"], data["next", "done"], 0.9, time_dim=1)
    torch.testing.assert_close(loss.returns(data), returns)
    with torch.no_grad():
        lp = pi.get_dist(data.select("observation")).log_prob(data["action"]).unsqueeze(-1)
    torch.testing.assert_close(out["loss_actor"].detach(), -(lp * returns).mean())
    normalized = ReinforceLoss(pi, gamma=0.9, normalize_advantage=True)(data)
    std = (returns - returns.mean()) / returns.std()
    torch.testing.assert_close(normalized["loss_actor"].detach(), -(lp * std).mean())


def test_reinforce_with_baseline():
    pi, v = actor(), critic()
    data = rollout(pi)
    loss = ReinforceLoss(pi, v, loss_critic_type="l2").make_value_estimator("td1", gamma=0.9)
    assert isinstance(loss.value_estimator, TD1Estimator)
    out = loss(data)
    assert set(out.keys()) == {"loss_actor", "loss_value"}
    ref = TD1Estimator(gamma=0.9, value_network=v)(data.clone())
    with torch.no_grad():
        lp = pi.get_dist(data.select("observation")).log_prob(data["action"]).unsqueeze(-1)
        value = v(data.select("observation"))["state_value"]
    torch.testing.assert_close(out["loss_actor"].detach(), -(lp * ref["advantage"]).mean())
    torch.testing.assert_close(out["loss_value"].detach(), ((value - ref["value_target"]) ** 2).mean())
    # the actor's loss does not train the baseline
    out["loss_actor"].backward()
    assert v.module.weight.grad is None


def test_reinforce_errors():
    pi = actor()
    data = rollout(pi)
    del data["next", "reward"]
    with pytest.raises(KeyError, match=r"\('next', 'reward'\) not found"):
        ReinforceLoss(pi)(data)
    with pytest.raises(ValueError, match="delay_value=True is not supported"):
        ReinforceLoss(pi, critic(), delay_value=True)
    nan = rollout(pi)
    nan["next", "reward"][0, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        ReinforceLoss(pi)(nan)


def _trl():
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchrl.objectives as trl_objectives
    return trl_objectives


def test_a2c_matches_torchrl():
    trl = _trl()
    pi, v = actor(), critic()
    data = rollout(pi)
    data["advantage"] = torch.randn(B, T, 1)
    data["value_target"] = torch.randn(B, T, 1)
    theirs = trl.A2CLoss(pi, v, entropy_coeff=0.01, critic_coeff=1.0)(data.clone())
    ours = A2CLoss(pi, v, entropy_coeff=0.01, critic_coeff=1.0)(data.clone())
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy"):
        torch.testing.assert_close(ours[key].detach(), theirs[key].detach(), atol=1e-6, rtol=1e-5)


def test_reinforce_matches_torchrl():
    trl = _trl()
    pi, v = actor(), critic()
    data = rollout(pi)
    data["advantage"] = torch.randn(B, T, 1)
    data["value_target"] = torch.randn(B, T, 1)
    theirs = trl.ReinforceLoss(pi, v)(data.clone())
    ours = ReinforceLoss(pi, v)(data.clone())
    for key in ("loss_actor", "loss_value"):
        torch.testing.assert_close(ours[key].detach(), theirs[key].detach(), atol=1e-6, rtol=1e-5)
