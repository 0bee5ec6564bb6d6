"""``LossModule.convert_to_functional``: the registration hand-written losses use (TorchRL's name)."""

import pytest
import torch
from tensordict.nn import TensorDictModule

from tdrl.objectives import LossModule, SoftUpdate


class _Loss(LossModule):
    def __init__(self, actor, critic, *, shared=False, target_actor=False):
        super().__init__()
        self.convert_to_functional(actor, "actor_network", create_target_params=target_actor)
        self.convert_to_functional(
            critic,
            "value_network",
            create_target_params=True,
            compare_against=list(actor.parameters()) if shared else None,
        )


def _nets(shared=False):
    actor = TensorDictModule(torch.nn.Linear(3, 2), ["obs"], ["action"])
    body = actor.module if shared else torch.nn.Linear(3, 2)
    critic = TensorDictModule(torch.nn.Sequential(body, torch.nn.Linear(2, 1)), ["obs"], ["state_action_value"])
    return actor, critic


def test_params_are_the_live_parameters_and_swap_in_with_to_module():
    actor, critic = _nets()
    loss = _Loss(actor, critic)
    assert loss.actor_network is actor
    assert loss.actor_network_params["module", "weight"] is actor.module.weight
    assert {id(p) for p in loss.parameters()} == {id(p) for p in [*actor.parameters(), *critic.parameters()]}
    zeros = loss.actor_network_params.detach().clone().zero_()
    data = torch.ones(4, 3)
    with zeros.to_module(loss.actor_network):
        assert (loss.actor_network(obs=data) == 0).all()
    assert not (loss.actor_network(obs=data) == 0).all()


def test_target_params_copy_or_detached_view():
    actor, critic = _nets()
    loss = _Loss(actor, critic)
    target = loss.target_value_network_params
    view = loss.target_actor_network_params
    assert not target["module", "0", "weight"].requires_grad
    assert not view["module", "weight"].requires_grad
    with torch.no_grad():
        actor.module.weight.add_(1.0)
        critic.module[0].weight.add_(1.0)
    # no target copy: the view follows the live weights; the copy does not until updated
    assert torch.equal(view["module", "weight"], actor.module.weight)
    assert not torch.equal(target["module", "0", "weight"], critic.module[0].weight)
    SoftUpdate(loss, eps=0.0).step()
    assert torch.equal(target["module", "0", "weight"], critic.module[0].weight)


def test_compare_against_detaches_the_shared_parameters():
    actor, critic = _nets(shared=True)
    loss = _Loss(actor, critic, shared=True)
    shared = loss.value_network_params["module", "0", "weight"]
    assert not isinstance(shared, torch.nn.Parameter)
    assert not shared.requires_grad
    assert shared.data_ptr() == actor.module.weight.data_ptr()
    assert isinstance(loss.value_network_params["module", "1", "weight"], torch.nn.Parameter)


def test_expand_dim_is_refused_with_the_fix():
    actor, critic = _nets()
    loss = _Loss(actor, critic)
    with pytest.raises(ValueError, match=r"expand_dim=2.*EnsembleModule"):
        loss.convert_to_functional(critic, "other_network", expand_dim=2)


def test_matches_torchrl_registration():
    objectives = pytest.importorskip("torchrl.objectives")

    class Theirs(objectives.LossModule):
        actor_network: TensorDictModule
        actor_network_params: object
        target_actor_network_params: object
        value_network: TensorDictModule
        value_network_params: object
        target_value_network_params: object

        def __init__(self, actor, critic):
            super().__init__()
            self.convert_to_functional(actor, "actor_network")
            self.convert_to_functional(
                critic, "value_network", create_target_params=True, compare_against=list(actor.parameters())
            )

    actor, critic = _nets(shared=True)
    ours, theirs = _Loss(actor, critic, shared=True), Theirs(actor, critic)
    for name in ("actor_network_params", "value_network_params", "target_value_network_params"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert sorted(a.keys(True, True)) == sorted(b.keys(True, True)), name
        for key in a.keys(True, True):
            assert torch.equal(a[key], b[key]), (name, key)
            assert a[key].requires_grad == b[key].requires_grad, (name, key)
