"""DDPG: deep deterministic policy gradient (Lillicrap et al., 2016).

A deterministic actor ``mu(s)`` and one Q-network ``Q(s, a)``:

- ``loss_value = d(Q(s, a), y)`` with ``y = r + gamma * (1 - terminated) * Q'(s', mu'(s'))``
  (``mu'`` and ``Q'`` the target parameters when delayed, no gradient);
- ``loss_actor = -Q(s, mu(s))`` (the Q parameters are not trained by it).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tdrl.modules import MLP, Actor, ValueOperator
    >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
    >>> value = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]), in_keys=["observation", "action"])
    >>> loss = DDPGLoss(actor, value)
    >>> data = TensorDict({
    ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
    ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
    ...              "done": torch.zeros(8, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
    >>> out = loss(data)
    >>> sorted(out.keys())
    ['loss_actor', 'loss_value', 'pred_value', 'pred_value_max', 'target_value', 'target_value_max', 'td_error']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._actor_critic import shared_parameter_names
from tdrl.objectives._off_policy import OffPolicyLoss, check_writes

__all__ = ["DDPGLoss"]


class DDPGLoss(OffPolicyLoss):
    """Deep deterministic policy gradient loss.

    Args:
        actor_network: a deterministic actor writing the action (``tdrl.modules.Actor``).
        value_network: ``Q(s, a)``: a TensorDict module reading the actor's action (and
            the observation) and writing ``"state_action_value"`` ``[*B, 1]``.

    Keyword Args:
        loss_function: ``"l2"`` (default), ``"l1"`` or ``"smooth_l1"``.
        delay_actor: keep target actor parameters (default False: the live actor picks
            the next action).
        delay_value: keep target Q parameters (default True), updated by
            ``SoftUpdate``/``HardUpdate``.
        gamma: must be ``None``: pass ``gamma`` to :meth:`~tdrl.objectives.LossModule.make_value_estimator`.
        separate_losses: parameters the Q-network shares with the actor are trained by
            the actor loss only.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: weight by the input's ``"priority_weight"`` (``"auto"``).

    Raises:
        ValueError: for a value network that does not read the actor's output or does
            not write ``"state_action_value"``, or an unknown ``loss_function``/``reduction``.

    Examples:
        >>> from torch import nn
        >>> from tdrl.modules import MLP, Actor, ValueOperator
        >>> from tdrl.objectives import SoftUpdate
        >>> actor = Actor(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), in_keys=["observation"])
        >>> value = ValueOperator(MLP(in_features=5, out_features=1), in_keys=["observation", "action"])
        >>> loss = DDPGLoss(actor, value, delay_actor=True)
        >>> _ = loss.make_value_estimator("td0", gamma=0.99)
        >>> updater = SoftUpdate(loss, eps=0.995)  # after each optimizer step: updater.step()
        >>> sorted(loss._target_names)
        ['actor_network', 'value_network']
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by DDPG; rename with ``set_keys``."""

        state_action_value: NestedKey = "state_action_value"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = [  # noqa: RUF012 (TorchRL's class attribute)
        "loss_actor",
        "loss_value",
        "pred_value",
        "target_value",
        "pred_value_max",
        "target_value_max",
    ]

    actor_network: TensorDictModuleBase
    value_network: TensorDictModuleBase

    def __init__(
        self,
        actor_network: nn.Module,
        value_network: nn.Module,
        *,
        loss_function: str = "l2",
        delay_actor: bool = False,
        delay_value: bool = True,
        gamma: float | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if gamma is not None:
            raise TypeError(f"{name}: gamma is not a loss argument; use loss.make_value_estimator(gamma={gamma}).")
        self.reduction = self._check_common(loss_function, reduction)
        self.loss_function = loss_function
        self.use_prioritized_weights = use_prioritized_weights
        self.delay_actor = delay_actor
        self.delay_value = delay_value
        actor_out = list(getattr(actor_network, "out_keys", []))
        value_in = list(getattr(value_network, "in_keys", []))
        if not any(key in value_in for key in actor_out):
            raise ValueError(
                f"{name}: the value_network must read the actor's output ({actor_out}), but its in_keys are "
                f"{value_in}. Build it as ValueOperator(net, in_keys=['observation', 'action'])."
            )
        self._register_network(actor_network, "actor_network", create_target_params=delay_actor)
        self._register_network(value_network, "value_network", create_target_params=delay_value)
        self._shared_names = shared_parameter_names(actor_network, value_network) if separate_losses else []
        self.actor_in_keys = list(getattr(actor_network, "in_keys", []))
        self.value_exclusive_keys = [k for k in value_in if k not in self.actor_in_keys and k not in actor_out]
        value_out = list(getattr(value_network, "out_keys", []))
        # Q's one output; a critic writing more (e.g. a concatenated input, then a group's Q-values) names
        # its Q entry "state_action_value" under some prefix, which set_keys may rename afterwards
        named = [k for k in value_out if (k[-1] if isinstance(k, tuple) else k) == "state_action_value"]
        q_key = value_out[0] if len(value_out) == 1 else named[0] if len(named) == 1 else None
        self.set_keys(state_action_value=q_key)

    def _on_keys_changed(self) -> None:
        check_writes(
            "DDPGLoss",
            self.value_network,
            self.tensor_keys.state_action_value,
            "value_network",
            "Pass a Q-network writing it, or rename with .set_keys(state_action_value=...).",
        )

    def _input_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys: list[NestedKey] = [("next", k.reward), ("next", k.done), ("next", k.terminated)]
        nxt = [("next", x) for x in [*self.actor_in_keys, *self.value_exclusive_keys]]
        for key in [*self.actor_in_keys, *self.value_network.in_keys, *nxt]:
            if key not in keys:
                keys.append(key)
        return keys

    # ------------------------------------------------------------------ terms
    def _value(self, data: TensorDictBase, params: TensorDictBase | None) -> Tensor:
        """``Q`` ``[*B]`` (``[*B, n_agents]`` with group keys) of ``data`` (which holds the action)."""
        if params is not None:
            with params.to_module(self.value_network):
                out = self.value_network(data)
        elif self._shared_names:
            live = dict(self.value_network.named_parameters())
            overrides = {n: live[n].detach() for n in self._shared_names}
            out = torch.func.functional_call(self.value_network, overrides, (data,))
        else:
            out = self.value_network(data)
        value = self._require(out, self.tensor_keys.state_action_value)
        batch = data.batch_size
        if value.shape[: len(batch)] != batch or value.shape[-1] != 1 or value.ndim > len(batch) + 2:
            raise ValueError(
                f"DDPGLoss: the value network wrote {self.tensor_keys.state_action_value!r} with shape "
                f"{tuple(value.shape)}; expected {(*batch, 1)}, or {(*batch, 'n_agents', 1)} for a group of "
                "agents. End it with a 1-unit layer."
            )
        return value.squeeze(-1)

    def _next_state_value(self, data: TensorDictBase) -> Tensor:
        """``Q'(s', mu'(s'))`` ``[*B, 1]`` without gradient."""
        with torch.no_grad():
            next_data = self._require(data, "next").select(*self.actor_in_keys, *self.value_exclusive_keys)
            actor_params = getattr(self, "target_actor_network_params", None)
            if actor_params is None:
                self.actor_network(next_data)
            else:
                with actor_params.to_module(self.actor_network):
                    self.actor_network(next_data)
            value_params = getattr(self, "target_value_network_params", None)
            return self._value(next_data, value_params).unsqueeze(-1)

    def loss_value(self, tensordict: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """The critic's loss alone (TorchRL's ``DDPGLoss.loss_value``), for a separate critic step.

        Writes ``"td_error"`` ``[*B]`` into ``tensordict``.

        Args:
            tensordict: ``[*B]`` transitions, as for :meth:`forward`.

        Returns:
            ``(loss_value, metadata)``; ``metadata`` holds the detached ``td_error``,
            ``pred_value``, ``target_value``, ``target_value_max`` and ``pred_value_max``.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from tensordict import TensorDict
            >>> from tdrl.modules import MLP, Actor, ValueOperator
            >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
            >>> value = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]),
            ...                       in_keys=["observation", "action"])
            >>> loss = DDPGLoss(actor, value)
            >>> data = TensorDict({
            ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
            ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
            ...              "done": torch.zeros(8, 1, dtype=torch.bool),
            ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
            >>> loss_value, meta = loss.loss_value(data)
            >>> loss_value.shape, sorted(meta)
            (torch.Size([]), ['pred_value', 'pred_value_max', 'target_value', 'target_value_max', 'td_error'])
        """
        try:
            weights = self._priority_weights(tensordict)
            pred = self._value(tensordict.select(*self.value_network.in_keys).detach(), None)
            target = self._target(tensordict, self._next_state_value(tensordict))
        except KeyError as err:
            raise self._diagnose(tensordict, err) from err
        loss_value = self._reduce_weighted(self._distance(pred, target), weights)
        pred = pred.detach()
        td_error = (pred - target).pow(2)
        tensordict.set(self.tensor_keys.priority, td_error)
        metadata = {
            "td_error": td_error,
            "pred_value": pred,
            "target_value": target,
            "target_value_max": target.max(),
            "pred_value_max": pred.max(),
        }
        return loss_value, metadata

    def loss_actor(self, tensordict: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """The actor's loss alone (TorchRL's ``DDPGLoss.loss_actor``): ``-Q(s, mu(s))``, critic frozen.

        Args:
            tensordict: ``[*B]`` transitions (the actor's and the critic's inputs at the root).

        Returns:
            ``(loss_actor, {})``.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from tensordict import TensorDict
            >>> from tdrl.modules import MLP, Actor, ValueOperator
            >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
            >>> value = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]),
            ...                       in_keys=["observation", "action"])
            >>> loss = DDPGLoss(actor, value)
            >>> data = TensorDict({
            ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
            ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
            ...              "done": torch.zeros(8, 1, dtype=torch.bool),
            ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
            >>> actor_loss, meta = loss.loss_actor(data)
            >>> actor_loss.shape, meta
            (torch.Size([]), {})
        """
        try:
            weights = self._priority_weights(tensordict)
            actor_data = tensordict.select(*self.actor_in_keys, *self.value_exclusive_keys).detach()
            self.actor_network(actor_data)
            actor_q = self._value(actor_data, self._detached("value_network"))
        except KeyError as err:
            raise self._diagnose(tensordict, err) from err
        return self._reduce_weighted(-actor_q, weights), {}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the DDPG losses of a batch of transitions (:meth:`loss_value`, then :meth:`loss_actor`).

        Args:
            tensordict: ``[*B]`` transitions (the networks' inputs at the root and under
                ``"next"``, the stored action, ``("next", "reward"/"done"/"terminated")``);
                ``"td_error"`` ``[*B]`` is written into it.

        Returns:
            A TensorDict with ``loss_actor``, ``loss_value`` and the detached ``td_error``,
            ``pred_value``, ``target_value`` (``[*B]``), ``pred_value_max``, ``target_value_max``.
        """
        loss_value, metadata = self.loss_value(tensordict)
        loss_actor, _ = self.loss_actor(tensordict)
        return TensorDict({"loss_actor": loss_actor, "loss_value": loss_value, **metadata}, batch_size=[])
