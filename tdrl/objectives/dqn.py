"""DQN losses: ``DQNLoss`` (with double DQN) and ``DistributionalDQNLoss`` (C51).

A DQN batch is a set of transitions ``(s, a, r, s')``, usually sampled from a replay
buffer: ``"observation"``, ``"action"`` and, under ``"next"``, the next observation,
``"reward"``, ``"done"`` and ``"terminated"``. The loss regresses ``Q(s, a)`` (the value
network's ``"action_value"`` at the taken action) onto a target built from the next
state's value under the *target* network (``target_value_network_params``, kept up to
date by :class:`~tdrl.objectives.SoftUpdate` or :class:`~tdrl.objectives.HardUpdate`).
A truncated step bootstraps from the next state; a terminated one does not.

Each call also writes the squared TD error of every transition into the input under
``"td_error"`` (the ``priority`` key), which
:meth:`~tdrl.data.replay_buffers.TensorDictReplayBuffer.update_tensordict_priority` feeds
back into a prioritized sampler.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.modules import MLP, QValueActor
    >>> from tdrl.objectives import DQNLoss, SoftUpdate
    >>> from tdrl.specs import OneHot
    >>> spec = OneHot(3)
    >>> actor = QValueActor(MLP(in_features=4, out_features=3, num_cells=[16]), spec=spec)
    >>> loss = DQNLoss(actor, double_dqn=True)
    >>> updater = SoftUpdate(loss, eps=0.99)
    >>> data = TensorDict({
    ...     "observation": torch.randn(8, 4), "action": spec.rand((8,)),
    ...     "next": {"observation": torch.randn(8, 4), "reward": torch.randn(8, 1),
    ...              "done": torch.zeros(8, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)},
    ... }, [8])
    >>> out = loss(data)
    >>> out["loss"].backward()
    >>> updater.step()
    >>> data["td_error"].shape
    torch.Size([8, 1])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl._compat import params_leaf, td_read, td_unchecked, td_write
from tdrl.modules.qvalue import DistributionalQValueActor, QValueActor, QValueModule
from tdrl.objectives._dqn_fast import fast_inputs, fast_plan, values_network
from tdrl.objectives._keys import MissingKeyError, keys_repr, next_key
from tdrl.objectives.common import LossModule
from tdrl.objectives.utils import LOSS_CRITIC_TYPES, ValueEstimators, distance_loss
from tdrl.specs import Binary, Categorical, Composite, MultiOneHot, OneHot, TensorSpec

__all__ = ["DQNLoss", "DistributionalDQNLoss"]

REDUCTIONS = ("mean", "sum", "none")
_SPACE_NAMES = {
    "one_hot": "one_hot",
    "one-hot": "one_hot",
    "onehot": "one_hot",
    "categorical": "categorical",
    "mult_one_hot": "mult_one_hot",
    "mult-one-hot": "mult_one_hot",
    "multi_one_hot": "mult_one_hot",
}
_SPEC_SPACES: tuple[tuple[type, str], ...] = (
    (OneHot, "one_hot"),
    (Categorical, "categorical"),
    (MultiOneHot, "mult_one_hot"),
)
_SPACE_HINT = (
    "Pass action_space='one_hot' | 'categorical' | 'mult_one_hot' or the env's action spec "
    "(action_space=env.action_spec), or build the network as QValueActor(..., spec=env.action_spec)."
)
_DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss}
# Validity masks the losses honour, as TorchRL's: padding of split trajectories.
_MASK_KEY = ("collector", "mask")
_FAST_PATH = {"enabled": True}  # tests switch it off to compare with the general path
_NO_BATCH = torch.Size([])


def _space_from_spec(owner: str, spec: TensorSpec) -> str:
    if isinstance(spec, Composite):
        key: NestedKey | None = "action" if "action" in spec.keys() else None
        if key is None:
            key = next((k for k in spec.keys(True, True) if isinstance(k, tuple) and k[-1] == "action"), None)
        if key is None:
            raise ValueError(
                f"{owner}: the Composite spec given as action_space has no 'action' entry "
                f"(keys: {list(spec.keys(True, True))}). {_SPACE_HINT}"
            )
        spec = cast(TensorSpec, spec[key])
    if isinstance(spec, Binary):
        raise ValueError(f"{owner}: a Binary action spec is not supported; use a OneHot or Categorical action.")
    for cls, name in _SPEC_SPACES:
        if isinstance(spec, cls):
            return name
    raise ValueError(
        f"{owner}: DQN needs a discrete action space (OneHot, Categorical or MultiOneHot spec), "
        f"got {type(spec).__name__}. {_SPACE_HINT}"
    )


def _find_action_space(owner: str, action_space: str | TensorSpec | None, network: nn.Module) -> str:
    """The action space of a Q-value loss: given (a name or a spec) or read from the network.

    Args:
        owner: the loss's name, for error messages.
        action_space: ``"one_hot"``, ``"categorical"``, ``"mult_one_hot"`` (``"one-hot"``
            spellings too), a discrete spec, or ``None`` to infer it.
        network: the value network; its ``action_space`` attribute, a
            :class:`~tdrl.modules.QValueModule` inside it, or its ``spec``, in that order.

    Raises:
        ValueError: for an unknown name, a non-discrete spec, a space that contradicts the
            network's, or none found.

    Examples:
        >>> from tdrl.modules import QValueActor
        >>> _find_action_space("DQNLoss", None, QValueActor(torch.nn.Linear(2, 3), action_space="categorical"))
        'categorical'
        >>> _find_action_space("DQNLoss", "one-hot", torch.nn.Linear(2, 3))
        'one_hot'
    """
    from_net = _network_space(network)
    if action_space is None:
        if from_net is None:
            raise ValueError(f"{owner}: the action space could not be read from the value network. {_SPACE_HINT}")
        return from_net
    if isinstance(action_space, TensorSpec):
        space = _space_from_spec(owner, action_space)
    elif isinstance(action_space, str) and action_space.lower() in _SPACE_NAMES:
        space = _SPACE_NAMES[action_space.lower()]
    else:
        raise ValueError(
            f"{owner}: action_space={action_space!r} is unknown; use one of "
            f"{sorted(set(_SPACE_NAMES.values()))} or a discrete action spec."
        )
    if from_net is not None and from_net != space:
        raise ValueError(
            f"{owner}: action_space={action_space!r} ({space}) contradicts the value network's "
            f"action space {from_net!r}; pass the same space to both (or omit action_space)."
        )
    return space


def _network_space(network: nn.Module) -> str | None:
    space = getattr(network, "action_space", None)
    if isinstance(space, str) and space.lower() in _SPACE_NAMES:
        return _SPACE_NAMES[space.lower()]
    for module in network.modules():
        if isinstance(module, QValueModule):
            return module.action_space
    spec = getattr(network, "spec", None)
    if isinstance(spec, TensorSpec):
        try:
            return _space_from_spec("", spec)
        except ValueError:
            return None
    return None


def _check_reduction(owner: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction={reduction!r} is unknown; use one of {REDUCTIONS}.")


def _check_prioritized_weights(owner: str, value: bool | str) -> None:
    if value not in (True, False, "auto"):
        raise ValueError(f"{owner}: use_prioritized_weights must be True, False or 'auto', got {value!r}.")


class _QLossBase(LossModule):
    """What DQN and distributional DQN share: key checks, weighting and reduction, priorities."""

    value_network: TensorDictModuleBase
    target_value_network_params: TensorDictParams
    reduction: str
    use_prioritized_weights: bool | str

    def _target_network(self) -> TensorDictModuleBase:
        """A copy of the value network that runs on ``target_value_network_params``.

        Swapping the target parameters into the live network for each call
        (``to_module``) costs about as much as the network's forward on a CartPole-sized
        batch; the copy holds views of the target tensors instead, so the updaters'
        in-place writes reach it. It is rebuilt when the target tensors are replaced
        (``loss.to(device)``, a new ``target_value_network_params``): the first leaf's
        storage is compared on each call.
        """
        params = self.target_value_network_params
        probe = params_leaf(params, self._target_probe_key).data_ptr()
        target = self.__dict__.get("_target_copy")
        if target is None or probe != self.__dict__["_target_probe"]:
            target = copy.deepcopy(self.value_network)
            params.to_module(target)
            target.requires_grad_(False)
            self.__dict__["_target_copy"] = target
            self.__dict__["_target_probe"] = probe
        if target.training != self.value_network.training:
            target.train(self.value_network.training)
        return target

    def _register_network(self, module: nn.Module, name: str, create_target_params: bool = False) -> None:
        super()._register_network(module, name, create_target_params)
        if create_target_params:
            probe_key = next(iter(self.target_value_network_params.keys(True, True)))
            self._target_probe_key = probe_key if isinstance(probe_key, tuple) else (probe_key,)
        self.__dict__["_target_copy"] = None

    def _get(self, data: TensorDictBase, key: NestedKey, hint: str) -> Tensor:
        value = data.get(key, None)
        if value is None:
            raise self._missing_key_error(data, key, hint)
        return value

    def _select(self, data: TensorDictBase, keys: list[NestedKey], where: str) -> TensorDictBase:
        if type(data) is TensorDict and all(type(k) is str for k in keys):  # the common case: no select machinery
            values = [td_read(data, k) for k in keys]
            if all(isinstance(v, Tensor) for v in values):
                return td_unchecked(dict(zip(keys, values)), data.batch_size, data.device)
        try:
            return data.select(*keys)
        except KeyError:
            missing = [k for k in keys if k not in data.keys(True, True)]
            raise MissingKeyError(
                f"{type(self).__name__}: the value network reads {missing} {where}, which the input "
                f"lacks (keys there: {keys_repr(data)}). A replay sample of env steps holds the "
                "observation at the root and the next one under 'next'."
            ) from None

    def _reduce_loss(self, loss: Tensor, data: TensorDictBase) -> Tensor:
        """Applies the importance weights and the validity mask, then the reduction."""
        return self._reduce_weighted(loss, self._weights(data, loss.shape), data.get(_MASK_KEY, None))

    def _weights(self, data: TensorDictBase, shape: torch.Size) -> Tensor | None:
        """The importance weights to apply (``None``: none), shaped like the per-sample loss."""
        weights = None
        if self.use_prioritized_weights is not False:
            weights = data.get(self.tensor_keys.priority_weight, None)
            if weights is None and self.use_prioritized_weights is True:
                raise self._missing_key_error(
                    data,
                    self.tensor_keys.priority_weight,
                    "use_prioritized_weights=True reads the importance weights a prioritized sampler "
                    "writes; sample from a PrioritizedReplayBuffer or pass use_prioritized_weights='auto'.",
                )
            if weights is not None and weights.shape != shape:
                weights = weights.reshape(shape) if weights.numel() == shape.numel() else weights
                if weights.shape != shape:
                    raise ValueError(
                        f"{type(self).__name__}: the importance weights {self.tensor_keys.priority_weight!r} "
                        f"have shape {tuple(weights.shape)}; expected {tuple(shape)} (one per sample)."
                    )
        return weights

    def _reduce_weighted(self, loss: Tensor, weights: Tensor | None, mask: Tensor | None) -> Tensor:
        if mask is not None:
            while mask.ndim > loss.ndim and mask.shape[-1] == 1:
                mask = mask.squeeze(-1)
            mask = mask.expand_as(loss)
            loss = torch.where(mask, loss, torch.zeros_like(loss))
        if weights is not None:
            if mask is not None:
                weights = weights * mask
            if self.reduction == "none":
                return loss * weights
            total = (loss * weights).sum()
            return total / weights.sum() if self.reduction == "mean" else total
        if self.reduction == "mean":
            return loss.mean() if mask is None else loss.sum() / mask.sum().clamp_min(1)
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def _write_priority(self, data: TensorDictBase, priority: Tensor) -> None:
        if data.device is not None and priority.device != data.device:
            priority = priority.to(data.device)
        key = self.tensor_keys.priority
        if type(key) is str and td_read(data, key) is None:
            td_write(data, key, priority)  # a new entry: nothing to write in place into
        else:
            data.set(key, priority, inplace=True)


class DQNLoss(_QLossBase):
    """The DQN loss (Mnih et al., 2015), with double DQN (van Hasselt et al., 2016) as an option.

    ``loss = distance(Q(s, a), target)`` with, by default (TD(0)),
    ``target = r + gamma * (1 - terminated) * max_a' Q_target(s', a')``; with
    ``double_dqn=True`` the next action is the online network's greedy one, valued by the
    target network. :meth:`make_value_estimator` swaps the TD(0) target for TD(1) or
    TD(lambda) over a time-ordered batch (the last batch dim, as the estimators read it).

    Args:
        value_network: a :class:`~tdrl.modules.QValueActor` (or any TensorDict module
            that writes ``"action_value"``, ``"action"`` and ``"chosen_action_value"``,
            e.g. a network followed by a :class:`~tdrl.modules.QValueModule`). A TensorDict
            module that writes only ``"action_value"`` and a plain ``nn.Module`` (reading
            ``"observation"``) are wrapped in a ``QValueActor``.

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"`` (Huber).
        delay_value: keep a target copy of the network's parameters
            (``target_value_network_params``, updated by ``SoftUpdate`` / ``HardUpdate``).
            ``False`` bootstraps from the live network, without gradient. Default ``True``.
        double_dqn: choose the next action with the online network and value it with the
            target network. Needs ``delay_value=True``.
        gamma: default discount of the value estimator (TorchRL 0.14 refuses this
            argument and wants ``make_value_estimator(gamma=...)``; both work here).
        action_space: ``"one_hot"``, ``"categorical"``, ``"mult_one_hot"`` or a discrete
            action spec; inferred from the value network when omitted.
        priority_key: where the TD error is written (same as ``set_keys(priority=...)``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per sample).
        use_prioritized_weights: ``"auto"`` (default) weights each sample's loss by the
            ``"priority_weight"`` entry a prioritized sampler writes, when present;
            ``True`` requires it; ``False`` ignores it.

    Raises:
        ValueError: for an unknown ``loss_function``, ``reduction`` or action space,
            ``double_dqn`` without ``delay_value``, or an action space that cannot be
            inferred.
        TypeError: when ``value_network`` is not a module.
        KeyError: when the value network does not write the keys the loss reads.

    The input keys can be renamed with :meth:`~tdrl.objectives.LossModule.set_keys`: ``action_value``, ``action``,
    ``value`` (the chosen action's value, ``"chosen_action_value"``), ``reward``,
    ``done``, ``terminated`` (read under ``"next"``), ``priority`` (written, ``"td_error"``),
    ``priority_weight``, and the estimator's ``advantage`` / ``value_target``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Categorical
        >>> loss = DQNLoss(torch.nn.Linear(3, 2), action_space="categorical", loss_function="smooth_l1")
        >>> _ = loss.make_value_estimator("td_lambda", gamma=0.9, lmbda=0.8)
        >>> data = TensorDict({
        ...     "observation": torch.randn(5, 3), "action": Categorical(2).rand((5,)),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.ones(5, 1),
        ...              "done": torch.zeros(5, 1, dtype=torch.bool)},
        ... }, [5])
        >>> loss(data)["loss"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """The entries the loss reads and writes (rename with :meth:`~tdrl.objectives.LossModule.set_keys`)."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "chosen_action_value"
        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0, ValueEstimators.TD1, ValueEstimators.TDLambda)
    out_keys: ClassVar[list[str]] = ["loss"]

    def __init__(
        self,
        value_network: QValueActor | nn.Module,
        *,
        loss_function: str | None = "l2",
        delay_value: bool = True,
        double_dqn: bool = False,
        gamma: float | None = None,
        action_space: str | TensorSpec | None = None,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        name = type(self).__name__
        super().__init__()
        loss_function = "l2" if loss_function is None else loss_function
        if loss_function not in LOSS_CRITIC_TYPES:
            raise ValueError(f"{name}: loss_function={loss_function!r} is unknown; use one of {LOSS_CRITIC_TYPES}.")
        reduction = "mean" if reduction is None else reduction
        _check_reduction(name, reduction)
        _check_prioritized_weights(name, use_prioritized_weights)
        if double_dqn and not delay_value:
            raise ValueError(
                f"{name}: double_dqn=True needs delay_value=True (the target network values the online "
                "network's greedy next action)."
            )
        if not isinstance(value_network, nn.Module):
            raise TypeError(
                f"{name}: value_network must be an nn.Module (a QValueActor, or a network to wrap in one); "
                f"got {type(value_network).__name__}."
            )
        self.action_space = _find_action_space(name, action_space, value_network)
        value_network = self._as_qvalue_actor(value_network, action_space)
        self.loss_function = loss_function
        self.delay_value = bool(delay_value)
        self.double_dqn = bool(double_dqn)
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        if priority_key is not None:
            self.tensor_keys.priority = priority_key
        if gamma is not None:
            self._value_hyperparams["gamma"] = float(gamma)
        self._register_network(value_network, "value_network", create_target_params=self.delay_value)
        self.value_network_in_keys = list(value_network.in_keys)
        self._on_keys_changed()

    def _as_qvalue_actor(self, network: nn.Module, action_space: str | TensorSpec | None) -> TensorDictModuleBase:
        """The network as a TensorDict module writing the greedy action and values (wrapped if needed)."""
        spec = action_space if isinstance(action_space, TensorSpec) else None
        space = None if spec is not None else self.action_space
        if isinstance(network, TensorDictModuleBase):
            if any(isinstance(m, QValueModule) for m in network.modules()):
                return network  # already greedy: its keys are checked against the loss's
            if self.tensor_keys.action_value not in network.out_keys:
                raise KeyError(
                    f"{type(self).__name__}: the value network writes {network.out_keys}, not the action "
                    f"values {self.tensor_keys.action_value!r}. Set its out_keys=['action_value'] or wrap "
                    "it in QValueActor."
                )
        return QValueActor(network, spec=spec, action_space=space)

    # ----------------------------------------------------------------- keys
    def _on_keys_changed(self) -> None:
        self.__dict__["_fast_config"] = None  # the fast path's plan reads the keys: decide again
        keys = self.tensor_keys
        writes = set(self.value_network.out_keys)
        needed = [keys.action_value] + ([keys.action] if self.double_dqn else [keys.value])
        missing = [k for k in needed if k not in writes]
        if missing:
            raise KeyError(
                f"{type(self).__name__}: the value network writes {self.value_network.out_keys}, but the loss "
                f"reads {missing} from it. Rename the loss's keys with set_keys(...) to the network's, or "
                "build the network with matching keys (QValueActor(action_value_key=..., action_key=...))."
            )
        # A QValueActor whose greedy value is the max of its action values (no mask, one
        # action group) is run without its head: the loss takes the max / argmax itself.
        net = self.value_network
        self._values_only = (
            type(net) is QValueActor
            and net.head.action_mask_key is None
            and net.head.action_space != "mult_one_hot"
            and net.head.action_value_key == keys.action_value
            and net.head.out_keys[2] == keys.value
        )

    @property
    def in_keys(self) -> list[NestedKey]:
        """The entries of the input the loss reads."""
        keys = self.tensor_keys
        net_keys = list(self.value_network.in_keys)
        out = [keys.action, next_key(keys.reward), next_key(keys.done), next_key(keys.terminated)]
        return out + net_keys + [next_key(k) for k in net_keys]

    # ------------------------------------------------------------ estimator
    def make_value_estimator(self, value_type: ValueEstimators | str | None = None, **hyperparams: Any) -> DQNLoss:
        """Builds the estimator of the target: TD(0) (default), TD(1) or TD(lambda).

        The estimator reads the next state's value the loss computes with the target
        network; ``gamma`` (default ``0.99``, or the constructor's) and ``lmbda`` (default
        ``0.95``) are its hyperparameters.

        Raises:
            ValueError: for GAE or an unknown estimator.
        """
        super().make_value_estimator(value_type, **hyperparams)
        return self

    # -------------------------------------------------------------- forward
    def _chosen(self, values: Tensor, action: Tensor, keepdim: bool) -> Tensor:
        """``values`` at ``action`` (an index or a one-hot vector)."""
        if self.action_space == "categorical":
            if action.ndim != values.ndim:
                action = action.unsqueeze(-1)
            if action.shape[:-1] != values.shape[:-1] or action.shape[-1] != 1:
                raise ValueError(
                    f"{type(self).__name__}: the action {self.tensor_keys.action!r} has shape "
                    f"{tuple(action.shape)}; a categorical action over action values of shape "
                    f"{tuple(values.shape)} must have shape {tuple(values.shape[:-1])} or "
                    f"{(*values.shape[:-1], 1)}. A one-hot action needs action_space='one_hot'."
                )
            if action.dtype.is_floating_point or action.dtype == torch.bool:
                raise TypeError(
                    f"{type(self).__name__}: a categorical action must hold integer indices, got dtype "
                    f"{action.dtype}. A one-hot action needs action_space='one_hot'."
                )
            chosen = values.gather(-1, action)
            return chosen if keepdim else chosen.squeeze(-1)
        if action.shape != values.shape:
            raise ValueError(
                f"{type(self).__name__}: the action {self.tensor_keys.action!r} has shape "
                f"{tuple(action.shape)}; a {self.action_space} action must have the shape of the action "
                f"values, {tuple(values.shape)}. An index action needs action_space='categorical'."
            )
        return (values * action.to(values.dtype)).sum(-1, keepdim=keepdim)

    def _next_value(self, next_inputs: TensorDictBase) -> Tensor:
        """The next state's value under the target network (no gradient), ``[*B, 1]``."""
        keys = self.tensor_keys
        net = self.value_network
        with torch.no_grad():
            if self._values_only:
                actor = cast(QValueActor, self._target_network() if self.delay_value else net)
                if self.double_dqn:
                    greedy = cast(QValueActor, net).action_values(next_inputs.copy()).argmax(-1, keepdim=True)
                    return actor.action_values(next_inputs).gather(-1, greedy)
                return actor.action_values(next_inputs).max(-1, keepdim=True).values
            if not self.delay_value:
                return net(next_inputs).get(keys.value)
            target = self._target_network()
            if self.double_dqn:
                next_action = net(next_inputs.copy()).get(keys.action)
                next_values = target(next_inputs).get(keys.action_value)
                return self._chosen(next_values, next_action, keepdim=True)
            return target(next_inputs).get(keys.value)

    def _fast_forward(self, tensordict: TensorDictBase) -> TensorDictBase | None:
        """The loss computed on the tensors (see ``_dqn_fast``), or ``None`` for the general path.

        Same values, gradients and written TD errors as the general path; taken only when
        the configuration and the batch provably reduce to the plain TD(0) DQN step.
        """
        estimator = self.value_estimator
        config = (
            id(estimator),
            self.loss_function,
            self.reduction,
            self.use_prioritized_weights,
            self.double_dqn,
            self.delay_value,
            estimator.tensor_keys.reward,
            estimator.tensor_keys.terminated,
        )
        if self.__dict__.get("_fast_config") != config:
            self.__dict__["_fast_plan"] = fast_plan(self) if _FAST_PATH["enabled"] else None
            self.__dict__["_fast_config"] = config
        plan = self.__dict__["_fast_plan"]
        if plan is None:
            return None
        inputs = fast_inputs(plan, tensordict, _MASK_KEY)
        if inputs is None:
            return None
        obs, action, next_obs, reward, terminated = inputs
        values = plan.net(obs)
        if values.shape[:-1] != obs.shape[:-1]:
            return None  # an unusual network: the general path checks it and says what is wrong
        chosen = values.gather(-1, action).squeeze(-1)
        with torch.no_grad():
            target_net = values_network(self._target_network()) if self.delay_value else plan.net
            next_values = target_net(next_obs)
            if self.double_dqn:
                greedy = plan.net(next_obs).argmax(-1, keepdim=True)
                next_value = next_values.gather(-1, greedy)
            else:
                next_value = next_values.max(-1, keepdim=True).values
            gamma = estimator.gamma.item()
            target = torch.addcmul(reward, ~terminated, next_value, value=gamma).squeeze(-1)
        self._write_priority(tensordict, (chosen.detach() - target).square_().unsqueeze_(-1))
        loss = _DISTANCES[self.loss_function](chosen, target, reduction=self.reduction)
        return td_unchecked({"loss": loss}, _NO_BATCH)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the loss and writes each sample's squared TD error into ``tensordict``.

        Args:
            tensordict: transitions with the value network's inputs at the root and under
                ``"next"``, the ``"action"`` taken, and ``("next", "reward" / "done" /
                "terminated")``.

        Returns:
            ``TensorDict(loss=...)``: a scalar (or ``[*B]`` with ``reduction="none"``).

        Raises:
            KeyError: naming a missing entry.
            ValueError: for an action whose shape does not fit the action space.
        """
        fast = self._fast_forward(tensordict)
        if fast is not None:
            return fast
        keys = self.tensor_keys
        net = self.value_network
        in_keys = self.value_network_in_keys
        action = self._get(tensordict, keys.action, "The batch must hold the action taken at each step.")
        nxt = tensordict.get("next", None)
        if nxt is None:
            raise self._missing_key_error(
                tensordict, "next", "DQN reads the next observation, reward and done flags under 'next'."
            )
        inputs = self._select(tensordict, in_keys, "at the root")
        if self._values_only:
            values = cast(QValueActor, net).action_values(inputs)
        else:
            values = net(inputs).get(keys.action_value)
        chosen = self._chosen(values, action, keepdim=False)
        next_value = self._next_value(self._select(nxt, in_keys, "under 'next'"))
        target = self.value_estimator.value_estimate(tensordict, next_value=next_value).squeeze(-1)
        self._write_priority(tensordict, (chosen.detach() - target).square_().unsqueeze_(-1))
        weights = self._weights(tensordict, chosen.shape)
        mask = tensordict.get(_MASK_KEY, None)
        if weights is None and mask is None and self.reduction != "none":
            # one fused op (and one backward node) for the common case
            loss = _DISTANCES[self.loss_function](chosen, target, reduction=self.reduction)
        else:
            loss = self._reduce_weighted(distance_loss(chosen, target, self.loss_function), weights, mask)
        return td_unchecked({"loss": loss}, _NO_BATCH)


class DistributionalDQNLoss(_QLossBase):
    """The distributional (C51) DQN loss (Bellemare et al., 2017).

    The value network (a :class:`~tdrl.modules.DistributionalQValueActor`) writes, for
    each action, log-probabilities over a fixed ``support`` of returns
    (``"action_value"`` of shape ``[*B, atoms, n_actions]``). The target distribution is
    the target network's at the next state and the online network's greedy next action,
    shifted by ``r + gamma * z`` (no shift after termination), clipped to the support and
    projected back onto it; the loss is its cross-entropy with the predicted distribution
    of the taken action. The per-sample cross-entropy is written as the priority.

    Args:
        value_network: a :class:`~tdrl.modules.DistributionalQValueActor` (any module with
            a ``support`` buffer writing ``"action_value"`` log-probabilities and
            ``"action"``).

    Keyword Args:
        gamma: the discount (required, as in TorchRL); ``make_value_estimator("td0",
            gamma=...)`` changes it.
        delay_value: keep a target copy of the parameters (default ``True``).
        priority_key: where the per-sample loss is written (default ``"td_error"``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: as in :class:`DQNLoss`.

    Raises:
        TypeError: when the network has no ``support``.
        ValueError: for an unknown reduction, or (on a call) a batch with more than one
            batch dim.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import MLP, DistributionalQValueActor
        >>> from tdrl.specs import OneHot
        >>> support = torch.linspace(-10, 10, 11)
        >>> actor = DistributionalQValueActor(
        ...     MLP(in_features=4, out_features=(11, 2), num_cells=[16]), support=support, spec=OneHot(2))
        >>> loss = DistributionalDQNLoss(actor, gamma=0.99)
        >>> data = TensorDict({
        ...     "observation": torch.randn(6, 4), "action": OneHot(2).rand((6,)),
        ...     "next": {"observation": torch.randn(6, 4), "reward": torch.randn(6, 1),
        ...              "done": torch.zeros(6, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(6, 1, dtype=torch.bool)},
        ... }, [6])
        >>> loss(data)["loss"].backward()
        >>> data["td_error"].shape
        torch.Size([6, 1])
    """

    @dataclass
    class _AcceptedKeys:
        """The entries the loss reads and writes (rename with :meth:`~tdrl.objectives.LossModule.set_keys`)."""

        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        priority_weight: NestedKey = "priority_weight"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0,)
    out_keys: ClassVar[list[str]] = ["loss"]
    gamma: Tensor

    def __init__(
        self,
        value_network: DistributionalQValueActor | nn.Module,
        *,
        gamma: float,
        delay_value: bool = True,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        name = type(self).__name__
        super().__init__()
        reduction = "mean" if reduction is None else reduction
        _check_reduction(name, reduction)
        _check_prioritized_weights(name, use_prioritized_weights)
        if not isinstance(value_network, TensorDictModuleBase) or not isinstance(
            getattr(value_network, "support", None), Tensor
        ):
            raise TypeError(
                f"{name}: value_network must be a DistributionalQValueActor (a TensorDict module with a "
                f"'support' tensor of returns); got {type(value_network).__name__}. Build it as "
                "DistributionalQValueActor(net, support=torch.linspace(v_min, v_max, atoms), spec=env.action_spec)."
            )
        self.register_buffer("gamma", torch.tensor(float(gamma)))
        self.delay_value = bool(delay_value)
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        if priority_key is not None:
            self.tensor_keys.priority = priority_key
        self.action_space = _find_action_space(name, None, value_network)
        if self.action_space == "mult_one_hot":
            raise ValueError(f"{name}: a mult_one_hot action space is not supported; use one_hot or categorical.")
        self._register_network(value_network, "value_network", create_target_params=self.delay_value)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The entries of the input the loss reads."""
        keys = self.tensor_keys
        net_keys = list(self.value_network.in_keys)
        out = [keys.action, next_key(keys.reward), next_key(keys.done), next_key(keys.terminated)]
        return out + net_keys + [next_key(k) for k in net_keys]

    def make_value_estimator(
        self, value_type: ValueEstimators | str | None = None, **hyperparams: Any
    ) -> DistributionalDQNLoss:
        """Only TD(0) applies (the projection is one step); a ``gamma`` given here replaces the loss's.

        Raises:
            ValueError: for any other estimator, or other hyperparameters.
        """
        value_type = ValueEstimators(value_type) if value_type is not None else ValueEstimators.TD0
        if value_type not in self.SUPPORTED_VALUE_ESTIMATORS:
            raise ValueError(
                f"{type(self).__name__} supports only the TD0 estimator (the C51 projection is one step); "
                f"got {value_type.name}."
            )
        unknown = set(hyperparams) - {"gamma"}
        if unknown:
            raise ValueError(f"{type(self).__name__}.make_value_estimator: only gamma applies, got {sorted(unknown)}.")
        if "gamma" in hyperparams:
            self.gamma.fill_(float(hyperparams["gamma"]))
        self.value_type = value_type
        return self

    def _log_prob_taken(self, log_probs: Tensor, action: Tensor) -> Tensor:
        """``[B, atoms]``: the predicted log-probabilities of the taken actions."""
        n = log_probs.shape[-1]
        if self.action_space == "categorical":
            index = action.reshape(-1) if action.numel() == log_probs.shape[0] else None
            if index is None or index.dtype.is_floating_point or index.dtype == torch.bool:
                raise ValueError(
                    f"{type(self).__name__}: a categorical action must hold one integer index per sample "
                    f"(shape [{log_probs.shape[0]}] or [{log_probs.shape[0]}, 1]); got shape "
                    f"{tuple(action.shape)} and dtype {action.dtype}."
                )
        else:
            if action.shape != (log_probs.shape[0], n):
                raise ValueError(
                    f"{type(self).__name__}: a one-hot action must have shape {(log_probs.shape[0], n)}; got "
                    f"{tuple(action.shape)}. An index action needs a Categorical action spec."
                )
            index = action.to(torch.uint8).argmax(-1)
        return log_probs.gather(-1, index.view(-1, 1, 1).expand(-1, log_probs.shape[-2], 1)).squeeze(-1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the cross-entropy loss and writes it per sample as the priority.

        Args:
            tensordict: ``[B]`` transitions (as for :class:`DQNLoss`).

        Returns:
            ``TensorDict(loss=...)``.

        Raises:
            ValueError: for a batch with more than one batch dim, or a bad action.
            KeyError: naming a missing entry.
        """
        keys = self.tensor_keys
        name = type(self).__name__
        if tensordict.batch_dims != 1:
            raise ValueError(
                f"{name}: expected a [B] batch of transitions, got batch_size {tuple(tensordict.batch_size)}; "
                "flatten it first (tensordict.reshape(-1))."
            )
        net = self.value_network
        in_keys = list(net.in_keys)
        hint = "Give the env's step outputs under 'next' (as env.rollout, the collectors and replay samples do)."
        action = self._get(tensordict, keys.action, "The batch must hold the action taken at each step.")
        reward = self._get(tensordict, next_key(keys.reward), hint)
        done = self._get(tensordict, next_key(keys.done), hint)
        terminated = tensordict.get(next_key(keys.terminated), done)
        nxt = tensordict.get("next")
        support = cast(Tensor, net.support)
        atoms = support.numel()
        v_min, v_max = support.min().item(), support.max().item()
        delta_z = (v_max - v_min) / (atoms - 1)
        steps = tensordict.get(keys.steps_to_next_obs, None)
        discount = self.gamma if steps is None else self.gamma ** steps.view_as(reward)

        log_probs = net(self._select(tensordict, in_keys, "at the root")).get(keys.action_value)
        log_p_taken = self._log_prob_taken(log_probs, action)

        with torch.no_grad():
            next_inputs = self._select(nxt, in_keys, "under 'next'")
            next_action = net(next_inputs.copy()).get(keys.action)
            target = self._target_network() if self.delay_value else net
            next_probs = target(next_inputs).get(keys.action_value).exp()
            if self.action_space == "categorical":
                next_index = next_action.reshape(-1)
            else:
                next_index = next_action.to(torch.uint8).argmax(-1)
            p_next = next_probs.gather(-1, next_index.view(-1, 1, 1).expand(-1, atoms, 1)).squeeze(-1)
            projected = _project_onto_support(
                p_next, reward, terminated, discount, support.to(reward.device), v_min, v_max, delta_z
            )
        loss = -(projected.to(log_p_taken.device) * log_p_taken).sum(-1)
        self._write_priority(tensordict, loss.detach().unsqueeze(-1))
        return TensorDict(loss=self._reduce_loss(loss, tensordict))


def _project_onto_support(
    p_next: Tensor,
    reward: Tensor,
    terminated: Tensor,
    discount: Tensor,
    support: Tensor,
    v_min: float,
    v_max: float,
    delta_z: float,
) -> Tensor:
    """Projects the distribution ``p_next`` on ``r + discount * support`` back onto ``support``.

    Each shifted atom's mass is split between its two neighbouring atoms in proportion to
    its distance to them (an atom landing exactly on one keeps all its mass there).

    Returns:
        ``[B, atoms]`` probabilities.
    """
    batch, atoms = p_next.shape
    shifted = reward + (~terminated.bool()).to(reward.dtype) * discount * support
    if shifted.shape != (batch, atoms):
        raise ValueError(
            f"DistributionalDQNLoss: the reward has shape {tuple(reward.shape)}; expected [{batch}, 1] "
            f"(one per sample) to shift the {atoms} atoms of the support."
        )
    position = (shifted.clamp(v_min, v_max) - v_min) / delta_z
    low, up = position.floor().long(), position.ceil().long()
    # an atom that lands exactly on the grid would give zero weight to both neighbours
    low[(up > 0) & (low == up)] -= 1
    up[(low < atoms - 1) & (low == up)] += 1
    projected = torch.zeros_like(p_next)
    try:
        projected.scatter_add_(-1, low, p_next * (up.to(p_next.dtype) - position))
        projected.scatter_add_(-1, up, p_next * (position - low.to(p_next.dtype)))
    except RuntimeError:  # an index off the support: only a NaN in the shifted atoms gets there
        raise ValueError(
            "DistributionalDQNLoss: the shifted support r + gamma * z holds NaN; check the rewards "
            "(('next', 'reward')) and the discount."
        ) from None
    return projected
