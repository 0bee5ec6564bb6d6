"""GAE / TD(0) / TD(1) / TD(lambda) modules: keys, value-network calls, errors, TorchRL parity."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.modules import ValueOperator
from tdrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator
from tdrl.objectives.value import functional as F

B, T, OBS = 3, 20, 4


def _data(seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(B, T, 1, generator=g) < 0.1
    truncated = (torch.rand(B, T, 1, generator=g) < 0.1) & ~terminated
    return TensorDict(
        {
            "observation": torch.randn(B, T, OBS, generator=g),
            "next": {
                "observation": torch.randn(B, T, OBS, generator=g),
                "reward": torch.randn(B, T, 1, generator=g),
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            },
        },
        [B, T],
    )


def _value_net() -> ValueOperator:
    return ValueOperator(nn.Linear(OBS, 1), in_keys=["observation"])


def _estimators(net):
    return [
        GAE(gamma=0.9, lmbda=0.8, value_network=net),
        TD0Estimator(gamma=0.9, value_network=net),
        TD1Estimator(gamma=0.9, value_network=net),
        TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=net),
    ]


def test_gae_module_equals_functional():
    net = _value_net()
    data = GAE(gamma=0.9, lmbda=0.8, value_network=net)(_data())
    with torch.no_grad():
        v = net(_data().select("observation"))["state_value"]
        nv = net(_data()["next"].select("observation"))["state_value"]
    nxt = data["next"]
    adv, target = F.generalized_advantage_estimate(0.9, 0.8, v, nv, nxt["reward"], nxt["done"], nxt["terminated"])
    torch.testing.assert_close(data["advantage"], adv)
    torch.testing.assert_close(data["value_target"], target)
    torch.testing.assert_close(data["state_value"], v)
    torch.testing.assert_close(data["next", "state_value"], nv)
    assert not data["advantage"].requires_grad


@pytest.mark.parametrize("make", [0, 1, 2, 3])
def test_every_estimator_writes_advantage_and_target(make):
    est = _estimators(_value_net())[make]
    data = est(_data())
    assert data["advantage"].shape == data["value_target"].shape == (B, T, 1)
    torch.testing.assert_close(data["advantage"], data["value_target"] - data["state_value"])
    # value_estimate gives the same target without writing anything.
    fresh = _data()
    torch.testing.assert_close(est.value_estimate(fresh.set("state_value", data["state_value"])), data["value_target"])


def test_average_gae_standardizes_the_advantage_only():
    net = _value_net()
    plain = GAE(gamma=0.9, lmbda=0.8, value_network=net)(_data())
    avg = GAE(gamma=0.9, lmbda=0.8, value_network=net, average_gae=True)(_data())
    a = plain["advantage"]
    torch.testing.assert_close(avg["advantage"], (a - a.mean()) / a.std())
    torch.testing.assert_close(avg["value_target"], plain["value_target"])


def test_differentiable_passes_gradients():
    net = _value_net()
    data = GAE(gamma=0.9, lmbda=0.8, value_network=net, differentiable=True)(_data())
    assert data["value_target"].requires_grad
    data["advantage"].sum().backward()
    assert net.module.weight.grad is not None


def test_key_renaming_and_value_network_none():
    data = _data()
    data["v"] = torch.zeros(B, T, 1)
    data["next", "v"] = torch.zeros(B, T, 1)
    data["next", "r"] = data["next", "reward"]
    est = GAE(gamma=1.0, lmbda=1.0, value_network=None).set_keys(value="v", reward="r", advantage_key="adv")
    est(data)
    expected = F.reward2go(data["next", "r"], data["next", "done"], 1.0)
    # zero values: the target is the return bootstrapped with V = 0
    torch.testing.assert_close(data["value_target"], expected)
    assert "adv" in data.keys()
    assert "advantage" not in data.keys()
    with pytest.raises(ValueError, match="unknown key name 'rewardz'"):
        est.set_keys(rewardz="x")


def test_skip_existing_reuses_values():
    data = _data()
    data["state_value"] = torch.ones(B, T, 1)
    data["next", "state_value"] = torch.ones(B, T, 1)
    GAE(gamma=0.9, lmbda=0.8, value_network=_value_net(), skip_existing=True)(data)
    assert torch.equal(data["state_value"], torch.ones(B, T, 1))
    # Without skip_existing the network recomputes (what an epoch loop needs).
    GAE(gamma=0.9, lmbda=0.8, value_network=_value_net())(data)
    assert not torch.equal(data["state_value"], torch.ones(B, T, 1))


def test_time_dim_and_named_time_dim():
    data = _data()
    net = _value_net()
    ref = GAE(gamma=0.9, lmbda=0.8, value_network=net)(data.clone())["advantage"]
    swapped = data.clone().transpose(0, 1).contiguous()  # [T, B]
    out = GAE(gamma=0.9, lmbda=0.8, value_network=net, time_dim=0)(swapped)["advantage"]
    torch.testing.assert_close(out.transpose(0, 1), ref)
    named = data.clone().transpose(0, 1).contiguous()
    named.names = ["time", None]
    out = GAE(gamma=0.9, lmbda=0.8, value_network=net)(named)["advantage"]
    torch.testing.assert_close(out.transpose(0, 1), ref)


def test_steps_to_next_obs_discounts_more():
    data = _data()
    data["state_value"] = torch.zeros(B, T, 1)
    data["next", "state_value"] = torch.ones(B, T, 1)
    data["steps_to_next_obs"] = torch.full((B, T, 1), 2)
    out = TD0Estimator(gamma=0.5, value_network=None)(data)
    torch.testing.assert_close(
        out["value_target"], data["next", "reward"] + 0.25 * (~data["next", "terminated"]).float()
    )


def test_errors_name_the_problem():
    data = _data()
    bad_net = ValueOperator(nn.Linear(OBS, 2), in_keys=["observation"])
    with pytest.raises(ValueError, match=r"wrote 'state_value' with shape \(3, 20, 2\); expected \(3, 20, 1\)"):
        GAE(gamma=0.9, lmbda=0.8, value_network=bad_net)(data)
    no_reward = _data()
    del no_reward["next", "reward"]
    with pytest.raises(KeyError, match=r"'reward' not found.*set_keys"):
        GAE(gamma=0.9, lmbda=0.8, value_network=_value_net())(no_reward)
    with pytest.raises(KeyError, match="no value_network was given"):
        GAE(gamma=0.9, lmbda=0.8, value_network=None)(_data())
    missing_next_obs = _data()
    del missing_next_obs["next", "observation"]
    with pytest.raises(KeyError, match="missing under 'next'"):
        GAE(gamma=0.9, lmbda=0.8, value_network=_value_net())(missing_next_obs)
    with pytest.raises(ValueError, match="time_dim=5 is out of range"):
        GAE(gamma=0.9, lmbda=0.8, value_network=_value_net(), time_dim=5)(_data())


def test_works_with_a_plain_tensordict_module():
    net = TensorDictModule(nn.Linear(OBS, 1), in_keys=["observation"], out_keys=["state_value"])
    data = GAE(gamma=0.99, lmbda=0.95, value_network=net, average_gae=True)(_data())
    assert data["advantage"].shape == (B, T, 1)


@pytest.mark.parametrize("make", [0, 1, 2, 3])
def test_same_numbers_as_torchrl_estimators(make):
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchrl.objectives.value as trl

    net = _value_net()
    theirs = [
        trl.GAE(gamma=0.9, lmbda=0.8, value_network=net),
        trl.TD0Estimator(gamma=0.9, value_network=net),
        trl.TD1Estimator(gamma=0.9, value_network=net),
        trl.TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=net),
    ][make]
    ours = _estimators(net)[make]
    for seed in range(3):
        a, b = theirs(_data(seed)), ours(_data(seed))
        for key in ("advantage", "value_target"):
            torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-5)


def _rollout(seed: int = 0, steps: int = 40) -> TensorDict:
    """A ``[T]`` rollout as a collector writes it: ``next`` observation = the following row's
    observation, except after a reset (and at the last step)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(steps + 1, OBS, generator=g)
    nxt = obs[1:].clone()
    done = torch.zeros(steps, 1, dtype=torch.bool)
    done[[6, 17, 29]] = True
    terminated = done.clone()
    terminated[17] = False  # a truncation
    root = obs[:-1].clone()
    resets = torch.randn(3, OBS, generator=g)
    root[[7, 18, 30]] = resets  # the row after a done starts from a reset observation
    return TensorDict(
        {
            "observation": root,
            "next": {
                "observation": nxt,
                "reward": torch.randn(steps, 1, generator=g),
                "done": done,
                "terminated": terminated,
            },
        },
        [steps],
    )


class _CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(OBS, 1)
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.linear(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda net, **kw: GAE(gamma=0.9, lmbda=0.8, value_network=net, average_gae=True, **kw),
        lambda net, **kw: TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=net, **kw),
    ],
)
def test_next_values_reused_on_a_rollout(make):
    net = _CountingNet()
    op = ValueOperator(net, in_keys=["observation"])
    reused = make(op)(_rollout())
    rows_reused = net.rows
    net.rows = 0
    full = make(op, reuse_next_values=False)(_rollout())
    # 40 root rows + the next rows that are not the following row: the 3 resets and the last
    assert (rows_reused, net.rows) == (40 + 4, 80)
    for key in ("advantage", "value_target", "state_value", ("next", "state_value")):
        torch.testing.assert_close(reused[key], full[key])


def test_next_value_reuse_keeps_gradients_and_falls_back():
    net = _value_net()
    data = GAE(gamma=0.9, lmbda=0.8, value_network=net, differentiable=True)(_rollout())
    data["value_target"].sum().backward()
    grad = net.module.weight.grad.clone()
    net.zero_grad()
    ref = GAE(gamma=0.9, lmbda=0.8, value_network=net, differentiable=True, reuse_next_values=False)(_rollout())
    ref["value_target"].sum().backward()
    torch.testing.assert_close(grad, net.module.weight.grad)
    # nothing in common with the following rows: every next row is evaluated, values exact
    independent = _rollout()
    independent["next", "observation"] = torch.randn(40, OBS)
    out = GAE(gamma=0.9, lmbda=0.8, value_network=net)(independent.clone())
    with torch.no_grad():
        expected = net(independent["next"].select("observation"))["state_value"]
    torch.testing.assert_close(out["next", "state_value"], expected)


def test_td0_value_estimate_with_a_given_next_value_reads_only_the_step_signals():
    est = TD0Estimator(gamma=0.5, value_network=None)
    done = torch.tensor([[False], [True], [True]])
    data = TensorDict(
        {"next": {"reward": torch.ones(3, 1), "done": done, "terminated": torch.tensor([[False], [False], [True]])}},
        [3],
    )
    next_value = torch.full((3, 1), 4.0)
    torch.testing.assert_close(est.value_estimate(data, next_value=next_value), torch.tensor([[3.0], [3.0], [1.0]]))
    no_terminated = data.exclude(("next", "terminated"))  # 'done' stands for it, as in the other estimators
    torch.testing.assert_close(
        est.value_estimate(no_terminated, next_value=next_value), torch.tensor([[3.0], [1.0], [1.0]])
    )
    data["steps_to_next_obs"] = torch.tensor([[1], [2], [1]])
    torch.testing.assert_close(est.value_estimate(data, next_value=next_value), torch.tensor([[3.0], [2.0], [1.0]]))
    with pytest.raises(KeyError, match="'reward' not found"):
        est.value_estimate(data.exclude(("next", "reward")), next_value=next_value)
    with pytest.raises(ValueError, match=r"expected \(3, 1\)"):
        est.value_estimate(data, next_value=torch.zeros(3))
