"""Discrete SAC (Christodoulou, 2019): soft actor-critic over a finite set of actions.

The Q-networks read the state and write one value per action (``"action_value"``
``[*B, n]``); the expectations over the policy are sums over the ``n`` actions, so
nothing is sampled. With ``pi`` the policy's probabilities:

- ``loss_qvalue = sum_i d(Q_i(s)[a], y)``, ``y = r + gamma * (1 - terminated) *
  sum_a' pi(a'|s') [min_i Q'_i(s')[a'] - alpha * log pi(a'|s')]``;
- ``loss_actor = sum_a pi(a|s) [alpha * log pi(a|s) - min_i Q_i(s)[a]]``;
- ``loss_alpha = -log_alpha * (sum_a pi log pi + target_entropy)``.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from tdrl.modules import OneHotCategorical, ProbabilisticActor, ValueOperator
    >>> actor = ProbabilisticActor(TensorDictModule(nn.Linear(4, 3), ["observation"], ["logits"]),
    ...                            in_keys=["logits"], distribution_class=OneHotCategorical)
    >>> qvalue = ValueOperator(nn.Linear(4, 3), in_keys=["observation"], out_keys=["action_value"])
    >>> loss = DiscreteSACLoss(actor, qvalue, action_space="one-hot", num_actions=3)
    >>> data = TensorDict({
    ...     "observation": torch.randn(8, 4),
    ...     "action": nn.functional.one_hot(torch.randint(3, (8,)), 3),
    ...     "next": {"observation": torch.randn(8, 4), "reward": torch.randn(8, 1),
    ...              "done": torch.zeros(8, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
    >>> sorted(loss(data).keys())
    ['alpha', 'entropy', 'loss_actor', 'loss_alpha', 'loss_qvalue']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._actor_critic import check_actor
from tdrl.objectives._off_policy import OffPolicyLoss, check_writes
from tdrl.specs import Categorical, OneHot

__all__ = ["DiscreteSACLoss"]

_SPACES = {"one-hot": "one-hot", "one_hot": "one-hot", "onehot": "one-hot", "categorical": "categorical"}


def _action_space(value: Any) -> str:
    """``"one-hot"`` or ``"categorical"`` from a name or a spec."""
    if isinstance(value, OneHot):
        return "one-hot"
    if isinstance(value, Categorical):
        return "categorical"
    if isinstance(value, str) and value.lower() in _SPACES:
        return _SPACES[value.lower()]
    raise ValueError(
        f"DiscreteSACLoss: action_space={value!r} is not supported; pass 'one-hot' or 'categorical' "
        "(or a OneHot / Categorical spec, e.g. env.action_spec)."
    )


class DiscreteSACLoss(OffPolicyLoss):
    """Soft actor-critic loss for discrete actions.

    Args:
        actor_network: a probabilistic actor over the actions whose distribution has
            ``probs`` and ``logits`` (``Categorical`` or ``OneHotCategorical``).
        qvalue_network: a TensorDict module reading the state and writing
            ``"action_value"`` ``[*B, n]``; copied ``num_qvalue_nets`` times as in
            :class:`~tdrl.objectives.SACLoss`.

    Keyword Args:
        action_space: ``"one-hot"`` or ``"categorical"`` (or the env's action spec): how the
            stored action is encoded. Default ``None``: one-hot, with a warning (as TorchRL).
        num_actions: the number of actions, needed by ``target_entropy="auto"``.
        num_qvalue_nets: size of the Q-ensemble (default 2).
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        alpha_init, min_alpha, max_alpha, fixed_alpha: the entropy weight, as in
            :class:`~tdrl.objectives.SACLoss`.
        target_entropy_weight: ``target_entropy="auto"`` is ``target_entropy_weight *
            log(num_actions)`` (default 0.98 of the uniform policy's entropy).
        target_entropy: ``"auto"`` or a number.
        delay_qvalue: keep target Q parameters (default True).
        priority_key: where the per-sample TD error is written (also ``set_keys(priority=...)``).
        separate_losses: parameters shared with the actor are not trained by the Q loss.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        skip_done_states: give terminated next states a zero value (see :class:`SACLoss`).
        deactivate_vmap: call the Q-networks in a loop instead of ``torch.vmap``.
        use_prioritized_weights: weight by the input's ``"priority_weight"`` (``"auto"``).
        scalar_output_mode: as in :class:`~tdrl.objectives.SACLoss`.

    Raises:
        TypeError: for an actor without ``get_dist``.
        ValueError: for an unknown action space, ``target_entropy="auto"`` without
            ``num_actions``, or a Q-network that does not write ``"action_value"``.

    Examples:
        >>> from torch import nn
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import Categorical, ProbabilisticActor, ValueOperator
        >>> actor = ProbabilisticActor(TensorDictModule(nn.Linear(4, 6), ["observation"], ["logits"]),
        ...                            in_keys=["logits"], distribution_class=Categorical)
        >>> qvalue = ValueOperator(nn.Linear(4, 6), in_keys=["observation"], out_keys=["action_value"])
        >>> loss = DiscreteSACLoss(actor, qvalue, action_space="categorical", num_actions=6)
        >>> round(loss.target_entropy.item(), 4)  # 0.98 * log(6)
        1.7559
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by discrete SAC; rename with ``set_keys``."""

        action: NestedKey = "action"
        value: NestedKey = "state_value"
        action_value: NestedKey = "action_value"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        log_prob: NestedKey = "log_prob"
        priority_weight: NestedKey = "priority_weight"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    delay_actor = False
    out_keys = ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"]  # noqa: RUF012 (TorchRL's class attribute)

    actor_network: ProbabilisticTensorDictSequential
    qvalue_network: TensorDictModuleBase
    qvalue_network_params: TensorDictBase
    target_qvalue_network_params: TensorDictBase
    target_entropy: Tensor
    _actor_in: list[NestedKey]
    _q_call: Callable[[TensorDictBase, TensorDictBase], Tensor]

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        qvalue_network: nn.Module,
        *,
        action_space: str | OneHot | Categorical | None = None,
        num_actions: int | None = None,
        num_qvalue_nets: int = 2,
        loss_function: str = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        fixed_alpha: bool = False,
        target_entropy_weight: float = 0.98,
        target_entropy: str | float = "auto",
        delay_qvalue: bool = True,
        priority_key: NestedKey | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        skip_done_states: bool = False,
        deactivate_vmap: bool = False,
        use_prioritized_weights: str | bool = "auto",
        scalar_output_mode: str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_actor(name, actor_network)
        self.reduction = self._check_common(loss_function, reduction)
        self.loss_function = loss_function
        self.use_prioritized_weights = use_prioritized_weights
        self.skip_done_states = skip_done_states
        self.delay_qvalue = delay_qvalue
        self.num_qvalue_nets = num_qvalue_nets
        if action_space is None:
            warnings.warn(
                f"{name}: action_space was not given; reading the stored actions as one-hot. Pass "
                "action_space='one-hot' or 'categorical' (or env.action_spec).",
                UserWarning,
                stacklevel=2,
            )
            action_space = "one-hot"
        self.action_space = _action_space(action_space)

        self._register_network(actor_network, "actor_network")
        shared = list(actor_network.parameters()) if separate_losses else []
        self._register_ensemble(
            qvalue_network, "qvalue_network", num_qvalue_nets, delay_qvalue, shared, deactivate_vmap
        )
        self._register_alpha(alpha_init, min_alpha, max_alpha, fixed_alpha)
        self.scalar_output_mode = self._check_scalar_output_mode(scalar_output_mode)
        if target_entropy == "auto":
            if num_actions is None:
                raise ValueError(
                    f"{name}: target_entropy='auto' is target_entropy_weight * log(num_actions); pass "
                    "num_actions=... (e.g. env.action_spec.space.n) or a number as target_entropy."
                )
            target_entropy = -math.log(1.0 / num_actions) * target_entropy_weight
        elif isinstance(target_entropy, str):
            raise ValueError(f"{name}: target_entropy={target_entropy!r} is unknown; pass 'auto' or a number.")
        self.register_buffer("target_entropy", torch.tensor(float(target_entropy), device=self.log_alpha.device))
        self.set_keys(priority=priority_key)

    def _on_keys_changed(self) -> None:
        keys = self.tensor_keys
        check_writes(
            "DiscreteSACLoss",
            self.qvalue_network,
            keys.action_value,
            "qvalue_network",
            "Build it as ValueOperator(net, in_keys=['observation'], out_keys=['action_value']) (or "
            ".set_keys(action_value=...)).",
        )
        self._q_call = self._ensemble_caller(self.qvalue_network, keys.action_value)
        self._actor_in = list(self.actor_network.in_keys)

    def _input_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys: list[NestedKey] = [k.action, ("next", k.reward), ("next", k.done), ("next", k.terminated)]
        for key in [*self._actor_in, *[("next", x) for x in self._actor_in], *self.qvalue_network.in_keys]:
            if key not in keys:
                keys.append(key)
        return keys

    # ------------------------------------------------------------------ terms
    def _policy(self, data: TensorDictBase) -> tuple[Tensor, Tensor]:
        """``(probs, logits)`` ``[*B, n]`` of the policy at ``data``'s states."""
        dist = self.actor_network.get_dist(data.select(*self._actor_in))
        probs, logits = getattr(dist, "probs", None), getattr(dist, "logits", None)
        if probs is None or logits is None:
            raise TypeError(
                f"DiscreteSACLoss: the actor's distribution {type(dist).__name__} has no probs/logits; "
                "use distribution_class=Categorical or OneHotCategorical."
            )
        return probs, logits

    def _action_values(self, data: TensorDictBase, params: TensorDictBase) -> Tensor:
        value = self._q_call(data.select(*self.qvalue_network.in_keys), params)
        self._check_ensemble_out(value, data.batch_size, self.tensor_keys.action_value, None)
        return value

    def _next_state_value(self, data: TensorDictBase) -> Tensor:
        with torch.no_grad():
            next_data = self._require(data, "next")
            probs, _ = self._policy(next_data)
            log_probs = torch.where(probs == 0, 1e-8, probs).log()
            next_q = self._action_values(next_data, self.target_qvalue_network_params).min(0)[0]
            next_value = (probs * (next_q - self._alpha * log_probs)).sum(-1, keepdim=True)
            if self.skip_done_states:
                terminated = self._require(next_data, self.tensor_keys.terminated)
                next_value = next_value.masked_fill(terminated.view_as(next_value), 0.0)
        return next_value

    def _chosen(self, action_value: Tensor, action: Tensor) -> Tensor:
        """``[N, *B]``: each member's value of the stored action."""
        n = action_value.shape[-1]
        if self.action_space == "categorical":
            if action.shape[-1:] == (1,) and action.ndim == action_value.ndim - 1:
                action = action.squeeze(-1)
            if action.shape != action_value.shape[1:-1]:
                raise ValueError(
                    f"DiscreteSACLoss: the categorical action {self.tensor_keys.action!r} has shape "
                    f"{tuple(action.shape)}; expected {tuple(action_value.shape[1:-1])} (or with a trailing 1). "
                    "Is it one-hot? Then pass action_space='one-hot'."
                )
            index = action.long().expand(action_value.shape[0], *action.shape).unsqueeze(-1)
            return action_value.gather(-1, index).squeeze(-1)
        if action.shape != action_value.shape[1:]:
            raise ValueError(
                f"DiscreteSACLoss: the one-hot action {self.tensor_keys.action!r} has shape "
                f"{tuple(action.shape)}; expected {tuple(action_value.shape[1:])} ({n} actions). Is it an "
                "index? Then pass action_space='categorical'."
            )
        return (action_value * action.to(action_value.dtype)).sum(-1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the discrete SAC losses of a batch of transitions.

        Args:
            tensordict: ``[*B]`` transitions (the networks' inputs at the root and under
                ``"next"``, the stored ``action``, ``("next", "reward"/"done"/"terminated")``);
                ``"td_error"`` ``[*B]`` is written into it.

        Returns:
            A TensorDict with ``loss_actor``, ``loss_qvalue``, ``loss_alpha``, ``alpha``
            and ``entropy``.
        """
        keys = self.tensor_keys
        try:
            weights = self._priority_weights(tensordict)
            target = self._target(tensordict, self._next_state_value(tensordict))
            pred = self._chosen(
                self._action_values(tensordict, self.qvalue_network_params), self._require(tensordict, keys.action)
            )
            td_error = (pred - target).abs().detach().max(0)[0]
            loss_qvalue = self._reduce_weighted(self._distance(pred, target.expand_as(pred)).sum(0), weights)
            probs, logits = self._policy(tensordict)
            min_q = self._action_values(tensordict, self._detached("qvalue_network")).min(0)[0]
        except KeyError as err:
            raise self._diagnose(tensordict, err) from err
        loss_actor = self._reduce_weighted((probs * (self._alpha * logits - min_q)).sum(-1), weights)
        neg_entropy = (probs * logits).sum(-1).detach()
        loss_alpha = self._reduce_weighted(-self.log_alpha * (neg_entropy + self.target_entropy), weights)
        tensordict.set(keys.priority, td_error)
        return self._pack(
            tensordict,
            {"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, "loss_alpha": loss_alpha},
            {"alpha": self._alpha, "entropy": -neg_entropy.mean()},
        )
