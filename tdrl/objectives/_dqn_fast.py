"""DQNLoss's tensor-only step for its most common configuration.

A DQN update on a CartPole-sized batch costs little more than two small MLP calls, so the
per-call work of the general path (sub-TensorDicts for the network inputs, the
TensorDict module layers, the value estimator's key lookups) was 30% of the loss's
forward. When the configuration provably reduces to

    chosen = net(obs).gather(action)         (or (net(obs) * action).sum(-1), one-hot)
    target = reward + gamma * (1 - terminated) * max_a target_net(next_obs)   (TD(0))

the loss computes exactly that on the tensors. :func:`fast_plan` decides once per
configuration whether that holds; :func:`fast_inputs` checks each batch (a plain
TensorDict holding the expected entries with the expected shapes and dtypes). Anything
else (masks, importance weights, TD(lambda), a renamed or nested
input, hooks) takes the general path, which also owns every error message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import Tensor, nn

from tdrl._compat import FAST_PATHS, loss_kernel, params_leaf_chain, td_entries
from tdrl.modules._lean import hooks_free, skip_existing

if TYPE_CHECKING:
    from tdrl.objectives.dqn import DQNLoss
    from tdrl.objectives.value import ValueEstimatorBase

__all__ = ["FastPlan", "FastState", "fast_plan", "fast_state", "fast_inputs", "values_network", "distance_kernel"]


def distance_kernel(distance: str, reduction: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The reduced loss between two tensors of the same shape, as ``_DISTANCES[distance]`` computes it.

    ``F.mse_loss`` and ``F.smooth_l1_loss`` broadcast their inputs first (two views, and
    two more autograd nodes); on equal shapes that is a no-op, so the fast step calls the
    kernel they end in, with the same arguments. Other distances, or a torch whose kernels
    differ, get the functional.
    """
    kernel = loss_kernel(distance, reduction)
    if kernel is not None:
        return kernel
    functional = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss}[distance]
    return partial(functional, reduction=reduction)


class FastPlan(NamedTuple):
    """What the tensor-only step reads: the network, the batch entries, the TD(0) discount."""

    net: Callable[..., Tensor]
    obs_key: str
    action_key: Any
    reward_key: Any
    terminated_key: Any
    steps_key: Any
    weight_key: Any
    absent: tuple[tuple[str, ...], ...]
    distance: str
    one_hot: bool
    loss_fn: Callable[[Tensor, Tensor], Tensor]


def _plain_network(actor: nn.Module) -> TensorDictModule | None:
    """The TensorDictModule that computes the action values of a values-only QValueActor, if plain."""
    seq = cast(nn.Module, actor.module)
    steps = list(cast(Iterable[nn.Module], seq))
    if len(steps) != 2 or type(steps[0]) is not TensorDictModule:
        return None
    step = steps[0]
    if len(step.in_keys) != 1 or type(step.in_keys[0]) is not str or len(step.out_keys) != 1:
        return None
    if not (hooks_free(actor) and hooks_free(step) and hooks_free(seq)):
        return None
    if getattr(step, "method", None) is not None or getattr(step, "inplace", True) is not True:
        return None
    return step


def values_network(actor: nn.Module) -> Callable[..., Tensor]:
    """The plain network inside a QValueActor that :func:`fast_plan` accepted (or its target copy)."""
    return cast(TensorDictModule, cast(nn.Sequential, actor.module)[0]).module


def fast_plan(loss: DQNLoss) -> FastPlan | None:
    """The plan of the tensor-only step for ``loss``'s configuration, or ``None`` (general path)."""
    from tdrl.objectives.value.advantages import TD0Estimator  # the objectives package imports this module

    keys = loss.tensor_keys
    estimator = loss.value_estimator
    if not (
        loss._values_only
        and loss.action_space in ("categorical", "one_hot")
        and loss.reduction in ("mean", "sum")
        and loss.use_prioritized_weights is not True
        and type(estimator) is TD0Estimator
        and not estimator.average_rewards
        and estimator.gamma.numel() == 1
        and all(type(k) is str for k in (keys.action, keys.priority_weight))
    ):
        return None
    est_keys = estimator.tensor_keys
    if not all(type(k) is str for k in (est_keys.reward, est_keys.terminated)):
        return None
    step = _plain_network(loss.value_network)
    if step is None or step.out_keys[0] != keys.action_value:
        return None
    weight_key = keys.priority_weight if loss.use_prioritized_weights == "auto" else None
    # entries whose presence changes the computation: the batch then takes the general path
    absent = tuple(_key_path(k) for k in (est_keys.steps_to_next_obs, weight_key) if k is not None)
    if not FAST_PATHS["tensordict"] or any(path is None for path in absent):
        return None  # fast_inputs reads the entry dicts, and needs the keys as strings
    return FastPlan(
        net=step.module,
        obs_key=step.in_keys[0],
        action_key=keys.action,
        reward_key=est_keys.reward,
        terminated_key=est_keys.terminated,
        steps_key=est_keys.steps_to_next_obs,
        weight_key=weight_key,
        absent=cast("tuple[tuple[str, ...], ...]", absent),
        distance=loss.loss_function,
        one_hot=loss.action_space == "one_hot",
        loss_fn=distance_kernel(loss.loss_function, loss.reduction),
    )


class FastState(NamedTuple):
    """The plan of one configuration, with what tells, on each call, that it still holds.

    ``version`` is the loss's ``_config_version`` (bumped by attribute assignment,
    ``set_keys``, ``make_value_estimator``, ``to`` / ``double``, ``load_state_dict``);
    the estimator and its reward / terminated keys are compared as well, since they can
    be changed on the estimator itself. With a target network, ``target`` is the plain
    network inside the loss's target copy, valid while the target parameters' first leaf
    (``probe``: each entry dict on the way, with what it held) is the same tensor on the
    same storage (``probe_ptr``), and the copy is in the live network's train / eval mode.
    """

    version: int
    estimator: ValueEstimatorBase
    est_keys: Any
    reward: Any
    terminated: Any
    plan: FastPlan | None
    target: Callable[..., Tensor] | None
    network: nn.Module
    target_copy: nn.Module | None
    probe: tuple[tuple[dict, str, Any], ...] | None
    probe_ptr: int


def fast_state(loss: DQNLoss, enabled: bool) -> FastState:
    """The plan for ``loss``'s current configuration (``plan=None`` where the general path must run)."""
    estimator = loss.value_estimator  # built here on first use (which bumps the version: read it after)
    version = loss.__dict__.get("_config_version", 0)
    plan = fast_plan(loss) if enabled else None
    target = target_copy = probe = None
    probe_ptr = 0
    if plan is not None and loss.delay_value:
        target_copy = loss._target_network()  # rebuilt here when the target tensors were replaced
        target = values_network(target_copy)
        probe = params_leaf_chain(loss.target_value_network_params, loss._target_probe_key)
        if probe is None:
            plan = None  # the target tensors cannot be watched cheaply: the general path checks them each call
        else:
            probe_ptr = probe[-1][2].data_ptr()
    keys = estimator.tensor_keys
    return FastState(
        version,
        estimator,
        keys,
        keys.reward,
        keys.terminated,
        plan,
        target,
        loss.value_network,
        target_copy,
        probe,
        probe_ptr,
    )


def fast_state_holds(state: FastState, version: int, estimator: Any) -> bool:
    """Whether ``state`` still describes the loss (one counter and a few identities)."""
    if state.version != version or state.estimator is not estimator:
        return False
    keys = estimator.tensor_keys
    if keys is not state.est_keys or keys.reward != state.reward or keys.terminated != state.terminated:
        return False
    if state.probe is None:
        return True
    for entries, part, held in state.probe:
        if entries.get(part) is not held:
            return False
    copy = cast(nn.Module, state.target_copy)
    return state.probe[-1][2].data_ptr() == state.probe_ptr and copy.training == state.network.training


def _key_path(key: Any) -> tuple[str, ...] | None:
    """``key`` as a tuple of strings (``None`` for a key of another form)."""
    path = (key,) if type(key) is str else key
    if type(path) is not tuple or not path or not all(type(part) is str for part in path):
        return None
    return path


def _absent(data: TensorDict, path: tuple[str, ...]) -> bool:
    """Whether the entry at ``path`` is provably absent from ``data`` (read from the entry dicts)."""
    node: Any = data
    for part in path:
        if type(node) is not TensorDict:
            return False  # not a plain TensorDict on the way: let the general path decide
        entries = td_entries(node)
        if entries is None:
            return False
        node = entries.get(part)
        if node is None:
            return True
    return False


def fast_inputs(plan: FastPlan, data: Any, mask_key: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
    """``(obs, action, next_obs, reward, terminated)`` when ``data`` fits the plan, else ``None``.

    An index action comes back as ``[B, 1]``, a one-hot action as it is. The entries are
    read from the plain TensorDicts' entry dicts (the plan exists only where tensordict's
    internals were found as expected); any entry that is not a plain tensor, and any
    entry the plan needs absent (``mask_key``, multi-step counts, importance weights)
    that may be present, sends the batch to the general path.
    """
    if type(data) is not TensorDict or skip_existing():
        return None
    entries = td_entries(data)
    if entries is None:
        return None
    nxt = entries.get("next")
    if type(nxt) is not TensorDict:
        return None
    following = td_entries(nxt)
    if following is None:
        return None
    obs = entries.get(plan.obs_key)
    action = entries.get(plan.action_key)
    next_obs = following.get(plan.obs_key)
    reward = following.get(plan.reward_key)
    terminated = following.get(plan.terminated_key)
    if not (
        type(obs) is Tensor
        and type(action) is Tensor
        and type(next_obs) is Tensor
        and type(reward) is Tensor
        and type(terminated) is Tensor
    ):
        return None
    batch = data.batch_size
    if len(batch) != 1 or obs.ndim == 0:
        return None
    size = batch[0]
    if (
        obs.shape[0] != size
        or next_obs.shape != obs.shape
        or reward.shape != (size, 1)
        or terminated.shape != reward.shape
        or terminated.dtype != torch.bool
    ):
        return None
    if plan.one_hot:  # the general path's product with the values takes any dtype; the shape is checked there
        if action.ndim != 2 or action.shape[0] != size:
            return None
    elif action.dtype.is_floating_point or action.dtype == torch.bool:
        return None
    elif action.shape == batch:
        action = action.unsqueeze(-1)
    elif action.shape != (size, 1):
        return None
    mask_path = _key_path(mask_key)
    if mask_path is None or not _absent(data, mask_path):
        return None
    for path in plan.absent:
        if not _absent(data, path):
            return None
    return obs, action, next_obs, reward, terminated
