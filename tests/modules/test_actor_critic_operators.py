"""ActorValueOperator, ActorCriticOperator, ActorCriticWrapper, and ValueOperator as a Q-function."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    MLP,
    Actor,
    ActorCriticOperator,
    ActorCriticWrapper,
    ActorValueOperator,
    DdpgMlpQNet,
    NormalParamExtractor,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
)
from tdrl.objectives import ClipPPOLoss


def _trunk() -> TensorDictModule:
    return TensorDictModule(nn.Linear(4, 8), in_keys=["observation"], out_keys=["hidden"])


def _stochastic_head(in_key: str = "hidden", in_features: int = 8) -> ProbabilisticActor:
    net = nn.Sequential(nn.Linear(in_features, 4), NormalParamExtractor())
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=[in_key], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )


def _data(n: int = 5) -> TensorDict:
    return TensorDict(observation=torch.randn(n, 4), batch_size=[n])


def _param_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


# --- ActorValueOperator ----------------------------------------------------------------------
def test_actor_value_operator_runs_trunk_policy_and_value():
    agent = ActorValueOperator(_trunk(), _stochastic_head(), ValueOperator(nn.Linear(8, 1), in_keys=["hidden"]))
    td = agent(_data())
    assert td["action"].shape == (5, 2)
    assert td["state_value"].shape == (5, 1)
    assert td["sample_log_prob"].shape == (5,)
    assert td["hidden"].shape == (5, 8)


def test_policy_and_value_operators_are_the_parts_and_share_the_trunk():
    trunk, head, value_head = _trunk(), _stochastic_head(), ValueOperator(nn.Linear(8, 1), in_keys=["hidden"])
    agent = ActorValueOperator(trunk, head, value_head)
    policy, value = agent.get_policy_operator(), agent.get_value_operator()
    assert isinstance(policy, ProbabilisticTensorDictSequential)  # get_dist works, as losses need
    assert "state_value" not in policy(_data()).keys()
    assert "action" not in value(_data()).keys()
    assert _param_ids(trunk) <= _param_ids(policy)
    assert _param_ids(trunk) <= _param_ids(value)
    assert _param_ids(policy) | _param_ids(value) == _param_ids(agent)
    assert agent.get_policy_head() is head
    assert agent.get_value_head() is value_head
    td = _data()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.testing.assert_close(policy(td.clone())["action"], agent(td.clone())["action"])
    assert policy.get_dist(td.clone()).batch_shape == (5,)


def test_a_deterministic_policy_head_gives_a_plain_sequence():
    agent = ActorValueOperator(
        _trunk(), Actor(nn.Linear(8, 2), in_keys=["hidden"]), ValueOperator(nn.Linear(8, 1), in_keys=["hidden"])
    )
    policy = agent.get_policy_operator()
    assert type(policy) is TensorDictSequential
    assert policy(_data())["action"].shape == (5, 2)


def test_ppo_trains_a_shared_trunk_through_both_operators():
    agent = ActorValueOperator(_trunk(), _stochastic_head(), ValueOperator(nn.Linear(8, 1), in_keys=["hidden"]))
    loss = ClipPPOLoss(agent.get_policy_operator(), agent.get_value_operator())
    with set_exploration_type(ExplorationType.RANDOM):
        td = agent.get_policy_operator()(_data(16)).detach()
    td.set("advantage", torch.randn(16, 1))
    td.set("value_target", torch.randn(16, 1))
    losses = loss(td)
    (losses["loss_objective"] + losses["loss_critic"]).backward()
    trunk_weight = agent.module[0].module.weight
    assert trunk_weight.grad is not None
    assert trunk_weight.grad.abs().sum() > 0


# --- ActorCriticOperator -------------------------------------------------------------------------
def _critic() -> ValueOperator:
    return ValueOperator(MLP(in_features=10, out_features=1, num_cells=[16]), in_keys=["hidden", "action"])


def test_actor_critic_operator_scores_the_policy_s_own_action():
    agent = ActorCriticOperator(_trunk(), Actor(nn.Linear(8, 2), in_keys=["hidden"]), _critic())
    td = agent(_data())
    critic_net = agent.get_value_head().module
    torch.testing.assert_close(td["state_action_value"], critic_net(td["hidden"], td["action"]))
    assert agent.get_critic_operator() is agent
    with pytest.raises(RuntimeError, match=r"no state-value operator.*get_critic_operator"):
        agent.get_value_operator()
    assert "state_action_value" not in agent.get_policy_operator()(_data()).keys()


def test_actor_critic_operator_refuses_a_state_value_critic():
    with pytest.raises(ValueError, match=r"writes 'state_value'.*ActorValueOperator"):
        ActorCriticOperator(_trunk(), Actor(nn.Linear(8, 2), in_keys=["hidden"]), ValueOperator(nn.Linear(8, 1)))


# --- ActorCriticWrapper -----------------------------------------------------------------------------
def test_actor_critic_wrapper_holds_two_independent_networks():
    policy, value = _stochastic_head("observation", 4), ValueOperator(nn.Linear(4, 1))
    agent = ActorCriticWrapper(policy, value)
    td = agent(_data())
    assert td["action"].shape == (5, 2)
    assert td["state_value"].shape == (5, 1)
    assert agent.get_policy_operator() is policy
    assert agent.get_policy_head() is policy
    assert agent.get_value_operator() is value
    assert agent.get_value_head() is value
    assert not (_param_ids(policy) & _param_ids(value))


def test_parts_must_be_tensordict_modules():
    with pytest.raises(TypeError, match=r"policy_operator must be a TensorDict module.*got Linear"):
        ActorValueOperator(_trunk(), nn.Linear(8, 2), ValueOperator(nn.Linear(8, 1), in_keys=["hidden"]))
    with pytest.raises(TypeError, match="value_operator must be a TensorDict module"):
        ActorCriticWrapper(Actor(nn.Linear(4, 2)), nn.Linear(4, 1))


# --- ValueOperator as a Q-function ---------------------------------------------------------------------
def test_value_operator_over_observation_and_action():
    net = DdpgMlpQNet()
    explicit = ValueOperator(net, in_keys=["observation", "action"], out_keys=["state_action_value"])
    default = ValueOperator(net, in_keys=["observation", "action"])
    assert default.out_keys == ["state_action_value"]
    assert ValueOperator(nn.Linear(4, 1)).out_keys == ["state_value"]
    td = TensorDict(observation=torch.randn(5, 6), action=torch.randn(5, 2), batch_size=[5])
    q = explicit(td.clone())["state_action_value"]
    assert q.shape == (5, 1)
    torch.testing.assert_close(default(td.clone())["state_action_value"], q)
    torch.testing.assert_close(q, net(td["observation"], td["action"]))


# --- TorchRL parity -------------------------------------------------------------------------------------
def test_same_outputs_and_parts_as_torchrl():
    trl = pytest.importorskip("torchrl.modules")
    trunk = _trunk()
    param_net = nn.Sequential(nn.Linear(8, 4), NormalParamExtractor())
    value_net = nn.Linear(8, 1)
    params = TensorDictModule(param_net, in_keys=["hidden"], out_keys=["loc", "scale"])

    def policy(actor_cls, dist_cls):
        return actor_cls(params, in_keys=["loc", "scale"], distribution_class=dist_cls, return_log_prob=True)

    mine = ActorValueOperator(trunk, policy(ProbabilisticActor, TanhNormal), ValueOperator(value_net, ["hidden"]))
    theirs = trl.ActorValueOperator(
        trunk, policy(trl.ProbabilisticActor, trl.TanhNormal), trl.ValueOperator(value_net, ["hidden"])
    )
    td = _data()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for get in ("__call__", "get_policy_operator", "get_value_operator"):
            mine_op = mine if get == "__call__" else getattr(mine, get)()
            their_op = theirs if get == "__call__" else getattr(theirs, get)()
            mine_out, their_out = mine_op(td.clone()), their_op(td.clone())
            assert set(their_out.keys()) <= set(mine_out.keys()), get
            for key in their_out.keys():
                torch.testing.assert_close(mine_out[key], their_out[key], rtol=0, atol=1e-6, msg=f"{get}: {key}")
    assert mine.get_policy_operator().in_keys == theirs.get_policy_operator().in_keys
    assert sorted(mine.get_value_operator().out_keys) == sorted(theirs.get_value_operator().out_keys)
