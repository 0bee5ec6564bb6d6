"""TanhDelta: deterministic bounded actions for DDPG/TD3 actors, equal to TorchRL's in values and gradients."""

from __future__ import annotations

import pickle

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhDelta
from tdrl.specs import Bounded

BOUNDS = {
    "unit": (-1.0, 1.0),
    "symmetric": (-2.0, 2.0),
    "asymmetric": (0.0, 3.0),
    "per-dim": (torch.tensor([-1.0, 0.0, -4.0]), torch.tensor([2.0, 5.0, -3.0])),
}


def _param(scale: float = 2.0) -> torch.Tensor:
    return (torch.randn(6, 3) * scale).requires_grad_()


@pytest.mark.parametrize("bounds", sorted(BOUNDS))
def test_actions_lie_in_the_box_and_every_draw_is_the_mode(bounds):
    low, high = BOUNDS[bounds]
    dist = TanhDelta(_param(scale=5.0), low=low, high=high)
    action = dist.rsample()
    assert action.shape == (6, 3)
    assert dist.batch_shape == (6,)
    assert dist.event_shape == (3,)
    low_t, high_t = torch.as_tensor(low), torch.as_tensor(high)
    assert ((action >= low_t) & (action <= high_t)).all()
    torch.testing.assert_close(dist.sample((2,)), action.detach().expand(2, 6, 3))
    torch.testing.assert_close(dist.deterministic_sample, action)
    torch.testing.assert_close(dist.mean, action)  # a point mass's mean is its point


def test_the_action_formula():
    param = torch.tensor([[-0.5, 0.0, 0.7]])
    low, high = 0.0, 3.0  # centre 1.5, half-width 1.5
    expected = 1.5 + 1.5 * torch.tanh(param + 1.5)  # the parameter is shifted by the centre (TorchRL's convention)
    torch.testing.assert_close(TanhDelta(param, low=low, high=high).mode, expected)
    torch.testing.assert_close(TanhDelta(param).mode, torch.tanh(param))


def test_log_prob_is_infinite_at_the_action_and_minus_infinite_elsewhere():
    dist = TanhDelta(torch.tensor([[0.1, -0.2], [0.3, 0.4]]), low=-3.0, high=1.0)
    assert torch.equal(dist.log_prob(dist.mode), torch.full((2,), float("inf")))
    moved = dist.mode.clone()
    moved[1, 0] += 0.01
    assert dist.log_prob(moved).tolist() == [float("inf"), float("-inf")]
    two_dims = TanhDelta(torch.zeros(4, 2, 3), event_dims=2)
    assert two_dims.event_shape == (2, 3)
    assert two_dims.log_prob(two_dims.mode).shape == (4,)


def test_gradient_reaches_the_parameter_through_rsample():
    param = _param()
    weight = torch.randn(6, 3)
    (TanhDelta(param, low=-2.0, high=2.0).rsample() * weight).sum().backward()
    expected = weight * 2.0 * (1 - torch.tanh(param.detach()) ** 2)
    torch.testing.assert_close(param.grad, expected, rtol=1e-5, atol=1e-6)


def test_old_bound_names_expand_and_update():
    dist = TanhDelta(torch.zeros(2, 3), min=-4.0, max=0.0)
    assert dist.low.item() == -4.0
    assert dist.high.item() == 0.0
    assert dist.expand((5, 2)).mode.shape == (5, 2, 3)
    dist.update(torch.ones(2, 3))
    torch.testing.assert_close(dist.mode, -2.0 + 2.0 * torch.tanh(torch.ones(2, 3) - 2.0))


def test_bad_arguments_raise_with_the_fix():
    with pytest.raises(ValueError, match="low must be < high"):
        TanhDelta(torch.zeros(2), low=1.0, high=1.0)
    with pytest.raises(ValueError, match="must be finite"):
        TanhDelta(torch.zeros(2), low=float("-inf"), high=1.0)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['scale'\\]"):
        TanhDelta(torch.zeros(2), scale=1.0)
    with pytest.raises(ValueError, match=r"event_dims=3 for a parameter of shape \(2,\)"):
        TanhDelta(torch.zeros(2), event_dims=3)


def _actor(spec: Bounded, net: nn.Module) -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["param"]),
        in_keys=["param"],
        spec=spec,
        distribution_class=TanhDelta,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high},
        return_log_prob=True,
    )


def test_a_ddpg_actor_acts_in_bounds_and_learns_through_its_action():
    spec = Bounded(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0]), shape=(2,))
    net = nn.Linear(4, 2)
    actor = _actor(spec, net)
    td = TensorDict(observation=torch.randn(8, 4), batch_size=[8])
    for etype in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC, ExplorationType.MEAN, ExplorationType.MODE):
        with set_exploration_type(etype):
            out = actor(td.clone())
        assert spec.is_in(out["action"]), etype
        assert (out["sample_log_prob"] == float("inf")).all()
    with set_exploration_type(ExplorationType.RANDOM):
        action = actor(td.clone())["action"]
    (-action.sum()).backward()  # DDPG's actor loss is -Q(s, actor(s)); here Q = sum of the action
    assert net.weight.grad is not None
    assert net.weight.grad.abs().sum() > 0
    clone = pickle.loads(pickle.dumps(actor))
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.testing.assert_close(clone(td.clone())["action"], actor(td.clone())["action"])


# --- TorchRL parity ------------------------------------------------------------------------------
@pytest.mark.parametrize("bounds", sorted(BOUNDS))
@pytest.mark.parametrize("scale", [1.0, 8.0])  # 8: many saturated actions
def test_values_log_probs_and_gradients_equal_torchrl(bounds, scale):
    trl = pytest.importorskip("torchrl.modules.distributions")
    low, high = BOUNDS[bounds]
    base = torch.randn(6, 3) * scale
    weight = torch.randn(6, 3)
    mine_param, their_param = base.clone().requires_grad_(), base.clone().requires_grad_()
    mine = TanhDelta(mine_param, low=low, high=high)
    theirs = trl.TanhDelta(their_param, low=low, high=high)
    assert mine.batch_shape == theirs.batch_shape
    assert mine.event_shape == theirs.event_shape
    torch.testing.assert_close(mine.mode, theirs.mode, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.deterministic_sample, theirs.deterministic_sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.sample((2,)), theirs.sample((2,)), rtol=0, atol=1e-6)
    action = theirs.mode.detach()
    for value in (action, action + 1e-3, torch.as_tensor(low).expand(6, 3).clone()):
        assert torch.equal(mine.log_prob(value), theirs.log_prob(value))
    (mine.rsample() * weight).sum().backward()
    (theirs.rsample() * weight).sum().backward()
    torch.testing.assert_close(mine_param.grad, their_param.grad, rtol=1e-5, atol=1e-6)


def test_a_ddpg_actor_equals_torchrl_s():
    trl_modules = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0])
    mine_net, their_net = nn.Linear(4, 2), nn.Linear(4, 2)
    their_net.load_state_dict(mine_net.state_dict())
    mine = _actor(Bounded(low, high, shape=(2,)), mine_net)
    theirs = trl_modules.ProbabilisticActor(
        TensorDictModule(their_net, in_keys=["observation"], out_keys=["param"]),
        in_keys=["param"],
        spec=trl_data.Bounded(low, high, shape=(2,)),
        distribution_class=trl_modules.TanhDelta,
        distribution_kwargs={"low": low, "high": high},
    )
    td = TensorDict(observation=torch.randn(8, 4) * 3, batch_size=[8])
    for etype in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(etype):
            mine_action, their_action = mine(td.clone())["action"], theirs(td.clone())["action"]
        torch.testing.assert_close(mine_action, their_action, rtol=0, atol=1e-6)
    with set_exploration_type(ExplorationType.DETERMINISTIC):  # how TorchRL's DDPG loss calls its actor
        mine(td.clone())["action"].square().sum().backward()
        theirs(td.clone())["action"].square().sum().backward()
    torch.testing.assert_close(mine_net.weight.grad, their_net.weight.grad, rtol=1e-5, atol=1e-6)
