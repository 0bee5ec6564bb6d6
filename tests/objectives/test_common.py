"""LossModule machinery: keys, value estimators, target parameters and their updaters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.objectives import (
    HardUpdate,
    LossModule,
    SoftUpdate,
    ValueEstimators,
    default_value_kwargs,
    distance_loss,
)
from tdrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator


class ToyLoss(LossModule):
    """A minimal off-policy-style loss: a value network and a delayed copy of it."""

    @dataclass
    class _AcceptedKeys:
        value: str = "state_value"
        reward: str = "reward"
        done: str = "done"
        terminated: str = "terminated"
        advantage: str = "advantage"
        value_target: str = "value_target"

    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0

    def __init__(self, net: nn.Module, delay: bool = True) -> None:
        super().__init__()
        self._register_network(net, "value_network", create_target_params=delay)

    def forward(self, td):
        with self.target_value_network_params.to_module(self.value_network):
            target = self.value_estimator.value_estimate(td)
        value = self.value_network(td.select("observation"))[self.tensor_keys.value]
        return TensorDict({"loss_value": distance_loss(target.detach(), value, "l2").mean()}, [])


def _net() -> TensorDictModule:
    return TensorDictModule(nn.Linear(2, 1), ["observation"], ["state_value"])


def _data() -> TensorDict:
    return TensorDict(
        {
            "observation": torch.randn(4, 2),
            "next": {
                "observation": torch.randn(4, 2),
                "reward": torch.ones(4, 1),
                "done": torch.zeros(4, 1, dtype=torch.bool),
                "terminated": torch.zeros(4, 1, dtype=torch.bool),
            },
        },
        [4],
    )


def test_target_params_are_buffers_and_saved():
    loss = ToyLoss(_net())
    names = [n for n, _ in loss.named_parameters()]
    assert names == ["value_network.module.weight", "value_network.module.bias"]
    state = loss.state_dict()
    assert "target_value_network_params.module.weight" in state
    torch.testing.assert_close(
        loss.target_value_network_params["module", "weight"], loss.value_network.module.weight.data
    )
    assert not loss.target_value_network_params["module", "weight"].requires_grad
    loss(_data())["loss_value"].backward()
    assert loss.value_network.module.weight.grad is not None


def test_soft_update_is_polyak_averaging():
    loss = ToyLoss(_net())
    updater = SoftUpdate(loss, eps=0.75)
    target = loss.target_value_network_params["module", "weight"]
    with torch.no_grad():
        loss.value_network.module.weight.add_(4.0)
    before = target.clone()
    updater.step()
    torch.testing.assert_close(target, 0.75 * before + 0.25 * loss.value_network.module.weight.detach())
    assert SoftUpdate(loss, tau=0.25).eps == 0.75
    with pytest.raises(ValueError, match="exactly one of eps"):
        SoftUpdate(loss, eps=0.5, tau=0.5)
    with pytest.raises(ValueError, match="eps must be in"):
        SoftUpdate(loss, eps=1.5)


def test_hard_update_copies_every_interval():
    loss = ToyLoss(_net())
    updater = HardUpdate(loss, value_network_update_interval=3)
    target = loss.target_value_network_params["module", "bias"]
    with torch.no_grad():
        loss.value_network.module.bias.fill_(7.0)
    updater.step()
    updater.step()
    assert target.item() != 7.0
    updater.step()
    assert target.item() == 7.0
    with pytest.raises(ValueError, match="value_network_update_interval must be >= 1"):
        HardUpdate(loss, value_network_update_interval=0)


def test_updater_needs_target_params():
    with pytest.raises(ValueError, match="has no target parameters"):
        SoftUpdate(ToyLoss(_net(), delay=False), eps=0.9)


def test_make_value_estimator_by_enum_and_string():
    loss = ToyLoss(_net())
    assert isinstance(loss.value_estimator, TD0Estimator)  # the default, built lazily
    for name, cls in [
        ("gae", GAE),
        (ValueEstimators.TD1, TD1Estimator),
        ("TDLambda", TDLambdaEstimator),
        ("td_lambda", TDLambdaEstimator),
        ("td0", TD0Estimator),
    ]:
        assert type(loss.make_value_estimator(name, gamma=0.5).value_estimator) is cls
        assert loss.value_estimator.gamma.item() == 0.5
        assert loss.value_estimator.value_network is loss.value_network
    with pytest.raises(ValueError, match="unknown estimator 'vtrace'"):
        loss.make_value_estimator("vtrace")
    assert default_value_kwargs(ValueEstimators.TD0) == {"gamma": 0.99}


def test_set_keys_reaches_the_estimator():
    loss = ToyLoss(_net())
    loss.make_value_estimator("td0")
    loss.set_keys(reward="r", value_key="v")
    assert loss.value_estimator.tensor_keys.reward == "r"
    assert loss.value_estimator.tensor_keys.value == "v"
    with pytest.raises(ValueError, match="unknown key name 'obs'"):
        loss.set_keys(obs="o")


def test_target_network_is_used_by_the_estimator():
    loss = ToyLoss(_net())
    loss.make_value_estimator("td0", gamma=1.0)
    with torch.no_grad():
        loss.target_value_network_params["module", "weight"].zero_()
        loss.target_value_network_params["module", "bias"].fill_(2.0)
    data = _data()
    with loss.target_value_network_params.to_module(loss.value_network):
        target = loss.value_estimator.value_estimate(data)
    torch.testing.assert_close(target, torch.full((4, 1), 3.0))  # r + V_target(s') = 1 + 2


def test_state_dict_round_trip_ignores_the_lazy_estimator():
    loss = ToyLoss(_net())
    loss(_data())  # builds the estimator
    fresh = ToyLoss(_net())
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh.value_network.module.weight, loss.value_network.module.weight)


def test_distance_loss_errors():
    with pytest.raises(ValueError, match="shapes"):
        distance_loss(torch.zeros(3, 1), torch.zeros(3), "l2")
    with pytest.raises(ValueError, match="loss_critic_type='cosine'"):
        distance_loss(torch.zeros(3), torch.zeros(3), "cosine")


# ----------------------------------------------------------------- the remembered parameters() list
def _dqn_loss():
    from tdrl.modules import QValueActor
    from tdrl.objectives import DQNLoss

    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    return DQNLoss(QValueActor(net, action_space="categorical"), delay_value=True)


def _walked(loss: nn.Module) -> list[nn.Parameter]:
    return list(nn.Module.parameters(loss))  # nn.Module's own walk of the tree, nothing remembered


def test_parameters_are_the_trees_and_exclude_the_target_copy():
    loss = _dqn_loss()
    first = list(loss.parameters())
    assert [id(p) for p in first] == [id(p) for p in _walked(loss)]
    assert [id(p) for p in loss.parameters()] == [id(p) for p in first]
    targets = {id(t) for t in loss.target_value_network_params.values(True, True)}
    assert len(first) == 4
    assert not targets & {id(p) for p in first}
    assert list(loss.parameters(recurse=False)) == []


def test_parameters_follow_modules_added_or_removed_later():
    loss = _dqn_loss()
    assert len(list(loss.parameters())) == 4
    loss.extra = nn.Linear(2, 2)  # at the top
    assert len(list(loss.parameters())) == 6
    net = loss.value_network.module[0].module
    net.append(nn.Linear(2, 2))  # deep inside the value network
    assert [id(p) for p in loss.parameters()] == [id(p) for p in _walked(loss)]
    assert len(list(loss.parameters())) == 8
    del loss.extra
    del net[-1]
    assert len(list(loss.parameters())) == 4
    assert [id(p) for p in loss.parameters()] == [id(p) for p in _walked(loss)]


def test_parameters_follow_replaced_parameters():
    loss = _dqn_loss()
    layer = loss.value_network.module[0].module[0]
    list(loss.parameters())
    layer.weight = nn.Parameter(torch.zeros(8, 3))  # through setattr
    assert any(p is layer.weight for p in loss.parameters())
    direct = nn.Parameter(torch.ones(8))
    layer._parameters["bias"] = direct  # a direct write, as TensorDict.to_module does
    assert any(p is direct for p in loss.parameters())
    layer.register_parameter("extra", nn.Parameter(torch.ones(1)))
    assert [id(p) for p in loss.parameters()] == [id(p) for p in _walked(loss)]


def test_a_copied_loss_lists_its_own_parameters():
    import copy
    import pickle

    loss = _dqn_loss()
    list(loss.parameters())
    for clone in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):
        mine = {id(p) for p in loss.parameters()}
        assert [id(p) for p in clone.parameters()] == [id(p) for p in _walked(clone)]
        assert not mine & {id(p) for p in clone.parameters()}
        optim = torch.optim.Adam(clone.parameters())  # the copy trains its own tensors
        assert [id(p) for p in optim.param_groups[0]["params"]] == [id(p) for p in _walked(clone)]
