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

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl._compat import td_read, td_unchecked, td_write
from tdrl.modules.qvalue import QValueActor, QValueModule
from tdrl.modules.rnn import next_sequence_inputs
from tdrl.objectives._dqn_fast import fast_inputs, fast_state, fast_state_holds
from tdrl.objectives._keys import next_key
from tdrl.objectives._q_common import (
    _DISTANCES,
    _MASK_KEY,
    _NO_BATCH,
    _check_prioritized_weights,
    _check_reduction,
    _find_action_space,
    _QLossBase,
)
from tdrl.objectives.distributional_dqn import DistributionalDQNLoss
from tdrl.objectives.utils import LOSS_CRITIC_TYPES, ValueEstimators, distance_loss
from tdrl.specs import TensorSpec

__all__ = ["DQNLoss", "DistributionalDQNLoss"]

_FAST_PATH = {"enabled": True}  # tests switch it off to compare with the general path


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
        self._adopt_head_keys(value_network)
        self._on_keys_changed()

    def _adopt_head_keys(self, network: nn.Module) -> None:
        """Read the keys from the network's greedy head when it writes none of the defaults.

        A group of agents' Q-network writes ``("agents", "action_value")``, ... : the loss
        follows it, as a later ``set_keys`` naming the same keys would.
        """
        keys = self.tensor_keys
        if keys.action_value in list(getattr(network, "out_keys", [])):
            return
        head = next((m for m in network.modules() if isinstance(m, QValueModule)), None)
        if head is None or len(head.out_keys) < 3:
            return
        keys.action, keys.action_value, keys.value = head.out_keys[:3]

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
        The plan is redone when the loss's configuration counter moved (any attribute
        assignment, ``set_keys``, ``make_value_estimator``, ``to``, ``load_state_dict``),
        the estimator or its keys changed, or the target tensors were replaced.
        Under ``torch.compile`` the general path is traced instead (its plan cache and
        ``gamma.item()`` cannot be).
        """
        if torch.compiler.is_compiling():
            return None
        attrs = self.__dict__
        state = attrs.get("_fast_state")
        estimator = attrs["_value_estimator"]
        if state is None or not fast_state_holds(state, attrs.get("_config_version", 0), estimator):
            state = attrs["_fast_state"] = fast_state(self, _FAST_PATH["enabled"])
            estimator = state.estimator
        plan = state.plan
        if plan is None:
            return None
        inputs = fast_inputs(plan, tensordict, _MASK_KEY)
        if inputs is None:
            return None
        obs, action, next_obs, reward, terminated = inputs
        values = plan.net(obs)
        if values.shape[:-1] != obs.shape[:-1]:
            return None  # an unusual network: the general path checks it and says what is wrong
        # every tensor stays [B, 1] (chosen values, targets, TD errors): the reduced loss is the same
        # number as on [B], and no squeeze / unsqueeze is spent (each small op costs as much as the
        # arithmetic in an update whose caches the optimizer step just flushed)
        if plan.one_hot:
            if action.shape != values.shape:
                return None  # the general path says what is wrong with the action
            # as the general path: same rounding; an integer or bool one-hot is promoted to the values' dtype
            # inside the product, the same numbers as converting it first, one op less
            convert = action.dtype.is_floating_point or action.dtype.is_complex
            chosen = (values * (action.to(values.dtype) if convert else action)).sum(-1, keepdim=True)
        else:
            chosen = values.gather(-1, action)
        with torch.no_grad():
            target_net = state.target if state.target is not None else plan.net
            next_values = target_net(next_obs)
            if self.double_dqn:
                greedy = plan.net(next_obs).argmax(-1, keepdim=True)
                next_value = next_values.gather(-1, greedy)
            else:
                next_value = next_values.amax(-1, keepdim=True)  # the max's value, without its index
            # next_value is a fresh tensor: zero it where the episode terminated, in place
            target = torch.add(reward, next_value.masked_fill_(terminated, 0.0), alpha=estimator.gamma.item())
            key = self.tensor_keys.priority
            priority = td_read(tensordict, key)
            if priority is None and type(key) is str:
                # a new entry (a fresh replay sample): fast_inputs checked that the batch is a plain TensorDict
                td_write(tensordict, key, torch.sub(chosen, target).square_())
            elif (
                type(priority) is Tensor
                and priority.shape == target.shape
                and priority.dtype == target.dtype
                and priority.device == target.device
                and priority.is_contiguous()
            ):
                # the batch already holds a TD-error entry (a replay sample written before): overwrite it
                # in place without a temporary, as the general path's inplace set does (under no_grad,
                # chosen needs no detach: nothing here is recorded for backward)
                torch.sub(chosen, target, out=priority).square_()
            else:
                self._write_priority(tensordict, torch.sub(chosen, target).square_())
        return td_unchecked({"loss": plan.loss_fn(chosen, target)}, _NO_BATCH)

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
        next_value = self._next_value(next_sequence_inputs(tensordict, self._select(nxt, in_keys, "under 'next'"), net))
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
