"""PPOLoss / ClipPPOLoss's tensor-only step (``_ppo_fast``) against their general path.

Every test runs a loss with the fast step allowed and an identical copy with it switched
off, from the same random state, and asks for bitwise equal losses, diagnostics,
gradients and random state afterwards; a configuration changed after a first call (which
cached a plan) must still give the general path's result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss, KLPENPPOLoss, PPOLoss, _ppo_fast

OBS, ACT, N = 5, 2, 16


def continuous_actor(distribution=TanhNormal, kwargs=None) -> ProbabilisticActor:
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT), NormalParamExtractor())
    return ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=distribution,
        distribution_kwargs={"low": -1.0, "high": 1.0} if kwargs is None else kwargs,
        return_log_prob=True,
    )


def categorical_actor() -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(nn.Linear(OBS, 3), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )


def critic() -> ValueOperator:
    return ValueOperator(nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1)), in_keys=["observation"])


def batch(actor: nn.Module, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    data = TensorDict({"observation": torch.randn(N, OBS, generator=g)}, [N])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        actor(data)
    with torch.no_grad():  # the policy moves away from the one that collected: ratios != 1, some clipped
        for p in actor.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    data["advantage"] = torch.randn(N, 1, generator=g)
    data["value_target"] = torch.randn(N, 1, generator=g)
    return data


def evaluate(loss: nn.Module, data: TensorDict, fast: bool) -> tuple[TensorDict, list, torch.Tensor, bool]:
    """The loss's output, its gradients, the next random number and whether the fast step ran."""
    _ppo_fast.ENABLED["on"] = fast
    try:
        torch.manual_seed(7)
        out = loss(data)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        total.backward()
        grads = [None if p.grad is None else p.grad.clone() for p in loss.parameters()]
        loss.zero_grad(set_to_none=True)
        state = loss.__dict__.get("_fast_state")
        taken = fast and state is not None and state[1] is not None
        return out.detach(), grads, torch.rand(3), taken
    finally:
        _ppo_fast.ENABLED["on"] = True


def assert_same(fast_result, general_result) -> None:
    out, grads, draw, _ = fast_result
    ref, ref_grads, ref_draw, _ = general_result
    assert list(out.keys()) == list(ref.keys())
    for key in ref.keys():
        assert torch.equal(out[key], ref[key]), key
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        assert (g is None and r is None) or torch.equal(g, r)
    assert torch.equal(draw, ref_draw)


def build(make_actor: Callable[[], nn.Module] = continuous_actor, cls: type = ClipPPOLoss, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    actor = make_actor()
    kwargs.setdefault("critic_network", critic())
    return cls(actor, **kwargs)


CONFIGS = {
    "seed": lambda: build(entropy_coef=1e-4, critic_coef=1.0, loss_critic_type="smooth_l1"),
    "plain_ppo": lambda: build(cls=PPOLoss),
    "l1_explained_variance": lambda: build(loss_critic_type="l1", log_explained_variance=True),
    "l2_two_entropy_draws": lambda: build(loss_critic_type="l2", samples_mc_entropy=2, critic_coeff=0.5),
    "asymmetric_clip": lambda: build(clip_epsilon=(0.1, 0.3)),
    "actor_only": lambda: build(critic_network=None, critic_coeff=None),
    "no_entropy_no_check": lambda: build(entropy_bonus=False, check_finite=False),
    "normal": lambda: build(lambda: continuous_actor(torch.distributions.Normal, {})),
    "categorical": lambda: build(categorical_actor),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_step_equals_general_path(name):
    loss = CONFIGS[name]()
    data = batch(loss.actor_network)
    reference = evaluate(copy.deepcopy(loss), data, fast=False)
    result = evaluate(loss, data, fast=True)
    assert result[3], "the configuration should take the fast step"
    assert_same(result, reference)
    # the cached plan serves the next call too
    assert_same(evaluate(loss, data, fast=True), reference)


def _hook_doubling_values(module, args, out):
    out["state_value"] = out["state_value"] * 2
    return out


CHANGES: dict[str, Callable[[nn.Module], object]] = {
    "reduction": lambda loss: setattr(loss, "reduction", "sum"),
    "normalize_advantage": lambda loss: setattr(loss, "normalize_advantage", True),
    "entropy_bonus_off": lambda loss: setattr(loss, "entropy_bonus", False),
    "loss_critic_type": lambda loss: setattr(loss, "loss_critic_type", "l2"),
    "explained_variance": lambda loss: setattr(loss, "log_explained_variance", True),
    "clip_value": lambda loss: setattr(loss, "clip_value", 0.1),
    "critic_coeff_in_place": lambda loss: loss.critic_coeff.fill_(0.25),
    "entropy_coeff_in_place": lambda loss: loss.entropy_coeff.fill_(0.5),
    "set_keys": lambda loss: loss.set_keys(advantage="adv"),
    "new_critic": lambda loss: (torch.manual_seed(11), setattr(loss, "critic_network", critic())),
    "critic_hook": lambda loss: loss.critic_network.register_forward_hook(_hook_doubling_values),
    "actor_net_hook": lambda loss: loss.actor_network.module[0].module.register_forward_hook(
        lambda m, a, out: (out[0] + 1, out[1])
    ),
    "actor_module_hook": lambda loss: loss.actor_network.module[0].register_forward_pre_hook(
        lambda m, a: a[0].set("observation", a[0]["observation"] * 0.5)
    ),
    "parameters_replaced": lambda loss: loss.load_state_dict(
        {k: v * 1.5 for k, v in loss.state_dict().items()}, assign=True
    ),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_configuration_changed_after_a_first_call_gives_the_general_result(name):
    loss = CONFIGS["seed"]()
    data = batch(loss.actor_network)
    data["adv"] = data["advantage"] * 3
    data["state_value"] = torch.randn(N, 1)  # clip_value reads it
    assert evaluate(loss, data, fast=True)[3]  # a plan is cached
    general = copy.deepcopy(loss)
    CHANGES[name](loss)
    CHANGES[name](general)
    reference = evaluate(general, data, fast=False)
    assert_same(evaluate(loss, data, fast=True), reference)
    assert_same(evaluate(loss, data, fast=True), reference)  # and again, whatever the cache holds now


BATCHES: dict[str, Callable[[TensorDict], TensorDict]] = {
    "action_log_prob": lambda data: data.exclude("sample_log_prob").set("action_log_prob", data["sample_log_prob"]),
    "advantage_without_last_dim": lambda data: data.clone().set("advantage", data["advantage"].squeeze(-1)),
    "nested_batch": lambda data: data.unsqueeze(0),
    "extra_entries": lambda data: data.clone().set("loc", torch.zeros(N, ACT)),
}


@pytest.mark.parametrize("name", list(BATCHES))
def test_other_batches_after_a_first_call_give_the_general_result(name):
    loss = CONFIGS["seed"]()
    data = batch(loss.actor_network)
    assert evaluate(loss, data, fast=True)[3]
    variant = BATCHES[name](data)
    reference = evaluate(copy.deepcopy(loss), variant, fast=False)
    assert_same(evaluate(loss, variant, fast=True), reference)


def test_klpen_and_subclasses_keep_the_general_path():
    class Custom(ClipPPOLoss):
        pass

    for loss in (build(cls=KLPENPPOLoss), build(cls=Custom)):
        data = batch(loss.actor_network)
        evaluate(loss, data, fast=True)
        assert loss.__dict__["_fast_state"][1] is None


def test_non_finite_input_on_the_fast_step_names_the_key():
    loss = CONFIGS["seed"]()
    data = batch(loss.actor_network)
    assert evaluate(loss, data, fast=True)[3]
    data["value_target"][3] = float("nan")
    with pytest.raises(ValueError, match="value_target"):
        loss(data)


def test_wrong_critic_shape_still_raises_the_general_message():
    loss = CONFIGS["seed"]()
    data = batch(loss.actor_network)
    assert evaluate(loss, data, fast=True)[3]
    bad = data.clone().set("value_target", torch.randn(N, 2))
    with pytest.raises(ValueError, match="state_value"):
        loss(bad)
    assert evaluate(loss, data, fast=True)[3]  # a batch's error leaves the plan in place


class _DictOutput(nn.Module):
    """Returns its parameters as a dict (a form the general path writes key by key)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())

    def forward(self, obs: torch.Tensor) -> dict:
        loc, scale = self.net(obs)
        return {"loc": loc, "scale": scale}


def test_a_network_output_of_another_form_sends_the_configuration_to_the_general_path():
    torch.manual_seed(0)
    actor = ProbabilisticActor(
        TensorDictModule(_DictOutput(), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )
    loss = ClipPPOLoss(actor, critic())
    data = batch(actor)
    reference = evaluate(copy.deepcopy(loss), data, fast=False)
    assert_same(evaluate(loss, data, fast=True), reference)
    assert loss.__dict__["_fast_state"][1] is None  # planned, then given up at the first call
    assert_same(evaluate(loss, data, fast=True), reference)


def test_a_key_renamed_on_tensor_keys_itself_is_read_as_the_general_path_reads_it():
    loss = CONFIGS["seed"]()
    data = batch(loss.actor_network)
    assert evaluate(loss, data, fast=True)[3]
    loss.tensor_keys.value = "other_value"  # past set_keys: the configuration counter does not move
    with pytest.raises(KeyError, match="other_value"):
        loss(data)
