"""What DQNLoss and DistributionalDQNLoss share: the action-space inference, the key checks,
the target network copy, the weighting and reduction of the per-sample loss, the priorities."""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl._compat import params_leaf, td_read, td_unchecked, td_write
from tdrl.modules.qvalue import QValueModule
from tdrl.objectives._keys import MissingKeyError, keys_repr
from tdrl.objectives.common import LossModule
from tdrl.specs import Binary, Categorical, Composite, MultiOneHot, OneHot, TensorSpec

__all__: list[str] = []

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
        target = self.__dict__.get("_target_copy")
        if target is not None and torch.compiler.is_compiling():
            # torch.compile cannot trace data_ptr()/deepcopy: it uses the copy built eagerly
            # (at construction, and again by the first eager call after the tensors moved)
            return target
        params = self.target_value_network_params
        probe = params_leaf(params, self._target_probe_key).data_ptr()
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
        if create_target_params and not any(nn.parameter.is_lazy(p) for p in module.parameters()):
            self._target_network()  # built now, so that a compiled loss finds it

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
