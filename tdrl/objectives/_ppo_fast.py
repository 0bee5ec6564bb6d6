"""PPOLoss / ClipPPOLoss's minibatch step on plain tensors, for their common configuration.

The seed tutorial's PPO update runs the actor and the critic (two 3x256 MLPs) on 64
samples; the general path's plumbing around them (a sub-TensorDict of the network
inputs, the TensorDict module layers and their writes, the per-term helpers, the
distribution-validation switch) cost about 15% of the loss's forward. When the
configuration provably reduces to

    loc, scale = actor nets(obs);  dist = builder(loc, scale)
    ratio = exp(dist.log_prob(action) - sample_log_prob)
    loss_objective = -mean(surrogate(ratio, advantage))
    loss_critic = coeff * distance(critic(obs), value_target)
    loss_entropy = entropy_coeff * mean(-entropy(dist))

the loss runs exactly these tensor operations, in the general path's order (the same
values, gradients and random draws), reading the batch from the TensorDict's entry dict
and passing the networks' outputs in a dict. :func:`fast_plan` decides once per
configuration (the loss's ``_config_version``) whether that holds; :func:`fast_forward`
checks each call the few things that can change without the counter moving (hooks,
the actor's lean steps, the batch's entries). Anything else (``normalize_advantage``,
value clipping, ``reduction`` other than ``"mean"``, ``separate_losses``, KL-penalty
PPO, custom modules or keys of another form, a missing entry) takes the general path,
which also owns every error message.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from tdrl._compat import FAST_PATHS, global_module_hooks, has_forward_hooks, td_entries, td_unchecked
from tdrl.modules._lean import LeanStep, call_direct, skip_existing
from tdrl.objectives import _actor_critic as ac
from tdrl.objectives._dqn_fast import distance_kernel

if TYPE_CHECKING:
    from tensordict import TensorDictBase

    from tdrl.objectives.ppo import PPOLoss

__all__ = ["ENABLED", "PPOFastPlan", "fast_plan", "fast_forward"]

ENABLED = {"on": True}  # tests switch it off to compare with the general path

_SCALAR = torch.Size([])
_LOG_PROB_SYNONYMS = {"sample_log_prob": "action_log_prob", "action_log_prob": "sample_log_prob"}


class PPOFastPlan(NamedTuple):
    """What the tensor-only step runs: the actor's lean steps, its head, the critic's step.

    ``steps`` and ``critic_step`` are the very objects the general path runs (the actor's
    ``_lean_steps`` list and the critic's ``_lean``); each call checks they are still in
    place. ``sources`` says, for every key a step, the head or the critic reads, whether
    it comes from an earlier step (``True``) or from the batch (``False``).
    """

    actor: Any
    steps: list[LeanStep]
    head: Any
    pairs: list
    critic: Any
    critic_step: LeanStep | None
    sources: dict[str, bool]
    critic_fn: Any


def _string_keys(keys: Any) -> bool:
    return all(type(k) is str for k in keys)


def fast_plan(loss: PPOLoss) -> PPOFastPlan | None:
    """The plan of the tensor-only step for ``loss``'s configuration, or ``None`` (general path)."""
    from tdrl.modules.actors import ProbabilisticActor, ValueOperator
    from tdrl.objectives.ppo import ClipPPOLoss, PPOLoss

    keys = loss.tensor_keys
    if not (
        FAST_PATHS["tensordict"]
        and type(loss) in (PPOLoss, ClipPPOLoss)
        and loss.reduction == "mean"
        and not loss.normalize_advantage
        and loss.clip_value is None
        and not loss._shared_names
        and _string_keys((keys.advantage, keys.sample_log_prob, keys.action, keys.value_target, keys.value))
    ):
        return None
    actor = loss.actor_network
    if type(actor) is not ProbabilisticActor:
        return None
    steps = actor.__dict__.get("_lean_steps")
    head = actor.__dict__.get("_head")
    if steps is None or head is None:
        return None
    net_inputs = set(loss._net_in_keys)
    sources: dict[str, bool] = {}

    def readable(wanted: Any) -> bool:
        for key in wanted:
            if type(key) is not str or (key not in sources and key not in net_inputs):
                return False  # the general path reads it from a sub-TensorDict, or says it is missing
            sources.setdefault(key, False)
        return True

    for step in steps:
        if step.kwarg_names is not None or not readable(step.in_keys) or not _string_keys(step.out_keys):
            return None
        if any(sources.get(key) is False for key in step.out_keys):
            return None  # a batch entry read earlier is overwritten: the general path handles that
        sources.update(dict.fromkeys(step.out_keys, True))
    pairs = head.__dict__.get("_pairs")
    if pairs is None or not readable(td_key for _, td_key in pairs):
        return None
    critic = critic_step = critic_fn = None
    if loss.critic_coeff is not None:
        critic = loss.critic_network
        if type(critic) is not ValueOperator:
            return None
        critic_step = critic.__dict__.get("_lean")
        if critic_step is None or critic_step.kwarg_names is not None or critic_step.out_keys != (keys.value,):
            return None
        if not readable(critic_step.in_keys):
            return None
        if loss.loss_critic_type not in ac._CRITIC_LOSSES:
            return None
        critic_fn = distance_kernel(loss.loss_critic_type, "mean")
    return PPOFastPlan(actor, steps, head, pairs, critic, critic_step, sources, critic_fn)


def _run(step: LeanStep, env: dict, entries: dict, sources: dict, batch: torch.Size, device: Any) -> Any:
    """``step``'s network on its inputs; ``None`` when its output is not what a lean write takes as is.

    The general path writes each output into a TensorDict of the batch's size and device; a
    tensor of another leading shape or device, or an output of another form, is left to it.
    """
    args = [env[key] if sources[key] else entries[key] for key in step.in_keys]
    out = call_direct(step.net, *args)
    if isinstance(out, Tensor):
        out = (out,)
    elif not isinstance(out, (tuple, list)):
        return None
    if len(out) != len(step.out_keys):
        return None
    size = len(batch)
    for key, value in zip(step.out_keys, out):
        if (
            not isinstance(value, Tensor)
            or (size and value.shape[:size] != batch)
            or (device is not None and value.device != device)
        ):
            return None
        if key != "_":
            env[key] = value
    return out


def _read(entries: dict, key: str) -> Tensor | None:
    value = entries.get(key)
    return value if isinstance(value, Tensor) else None


def fast_forward(loss: PPOLoss, data: TensorDictBase) -> TensorDictBase | None:
    """The loss computed on the tensors, or ``None`` when the general path must run.

    Returns ``None`` before computing anything unless the configuration and the batch fit
    the plan. The exceptions come after the networks ran: a value target of another shape
    than the critic's output (the general path then raises its error), and a network
    output the general path would write differently (another form, shape or device), which
    also disables the plan for this configuration.
    """
    if torch.compiler.is_compiling():
        return None
    attrs = loss.__dict__
    version = attrs.get("_config_version", 0)
    cached = attrs.get("_fast_state")
    if cached is None or cached[0] != version:
        cached = attrs["_fast_state"] = (version, fast_plan(loss))
    plan: PPOFastPlan | None = cached[1]
    if plan is None:
        return None
    entries = td_entries(data)
    if entries is None or skip_existing() or global_module_hooks() or torch.jit.is_tracing():
        return None
    actor, critic = plan.actor, plan.critic
    if actor.__dict__.get("_lean_steps") is not plan.steps or actor.__dict__.get("_head") is not plan.head:
        return None
    if plan.head.__dict__.get("_pairs") is not plan.pairs:
        return None
    for owner in actor._lean_owners:
        if has_forward_hooks(owner):
            return None
    if critic is not None and (critic.__dict__.get("_lean") is not plan.critic_step or has_forward_hooks(critic)):
        return None
    keys = loss.tensor_keys
    if critic is not None and plan.critic_step.out_keys[0] != keys.value:  # type: ignore[union-attr]  # with a critic
        return None  # a key renamed on tensor_keys itself, past set_keys: the general path reads it
    advantage = _read(entries, keys.advantage)
    action = _read(entries, keys.action)
    prev_log_prob = _read(entries, keys.sample_log_prob)
    if prev_log_prob is None and keys.sample_log_prob in _LOG_PROB_SYNONYMS:
        prev_log_prob = _read(entries, _LOG_PROB_SYNONYMS[keys.sample_log_prob])
    target = _read(entries, keys.value_target) if critic is not None else None
    if advantage is None or action is None or prev_log_prob is None or (critic is not None and target is None):
        return None
    sources = plan.sources
    for key, produced in sources.items():
        if not produced and not isinstance(entries.get(key), Tensor):
            return None
    batch = data.batch_size
    batch_ndim = len(batch)
    if advantage.ndim == batch_ndim:
        advantage = advantage.unsqueeze(-1)
    if advantage.shape[:batch_ndim] != batch or advantage.shape[-1] != 1:
        return None
    sample_shape = advantage.shape[:-1]
    if prev_log_prob.shape != sample_shape:
        prev_log_prob = loss._per_sample(prev_log_prob, advantage, "collected log-prob")
    build = plan.head._build
    if isinstance(build, type) or not getattr(build, "never_validates", False):
        with ac.fast_distributions():
            return _step(loss, plan, data, entries, batch, advantage, prev_log_prob, action, target)
    return _step(loss, plan, data, entries, batch, advantage, prev_log_prob, action, target)


def _step(
    loss: PPOLoss,
    plan: PPOFastPlan,
    data: TensorDictBase,
    entries: dict,
    batch: torch.Size,
    advantage: Tensor,
    prev_log_prob: Tensor,
    action: Tensor,
    target: Tensor | None,
) -> TensorDictBase | None:
    """The general path's operations, in its order, on the tensors (see the module docstring)."""
    sources, device = plan.sources, data.device
    env: dict[str, Tensor] = {}
    for step in plan.steps:
        if _run(step, env, entries, sources, batch, device) is None:
            loss.__dict__["_fast_state"] = (loss.__dict__.get("_config_version", 0), None)
            return None
    dist = plan.head._build(**{name: env[key] if sources[key] else entries[key] for name, key in plan.pairs})
    log_prob = dist.log_prob(action)
    if log_prob.shape != prev_log_prob.shape:
        log_prob = loss._per_sample(log_prob, advantage, "actor's log-prob")
    log_weight = (log_prob - prev_log_prob).unsqueeze(-1)
    ratio = log_weight.exp()
    gain, diagnostics, per_sample = loss._surrogate(ratio, advantage, data, dist)
    losses: dict[str, Tensor] = {"loss_objective": gain.mean().neg()}
    critic_step = plan.critic_step
    if critic_step is not None:
        value = _run(critic_step, env, entries, sources, batch, device)
        if value is None:
            loss.__dict__["_fast_state"] = (loss.__dict__.get("_config_version", 0), None)
            return None
        if value[0].shape != target.shape:  # type: ignore[union-attr]  # a critic comes with a target
            return None  # a batch whose target does not fit: the general path says what is wrong
        losses["loss_critic"] = loss._weighted(plan.critic_fn(value[0], target), loss.critic_coeff)  # type: ignore[arg-type]
        if loss.log_explained_variance:
            diagnostics["explained_variance"] = ac.explained_variance(target, value[0])  # type: ignore[arg-type]
    entropy = None
    if loss.entropy_bonus:
        entropy = ac.neg_entropy(dist, loss.samples_mc_entropy, advantage.ndim - 1).mean()
        losses["loss_entropy"] = entropy * loss.entropy_coeff
    with torch.no_grad():
        if entropy is not None:
            diagnostics["entropy"] = entropy.neg()
        # the general path's batch_means, without its detach calls (nothing here records a graph)
        # and its conversion of the boolean clip mask: stack promotes it to 0 / 1 in the copy
        stacked = torch.stack([log_weight, ratio, ratio.square(), *per_sample.values()])
        means = stacked.mean(dim=tuple(range(1, stacked.ndim))).unbind(0)
        diagnostics["kl_approx"] = means[0].neg()
        diagnostics["ESS"] = means[1].square().div_(means[2])
        diagnostics.update(zip(per_sample, means[3:]))
    if loss.check_finite:
        for term in losses.values():
            if not math.isfinite(term.item()):
                loss._raise_non_finite(data, loss.in_keys)
    losses.update(diagnostics)
    return td_unchecked(losses, _SCALAR)
