"""TD3: twin delayed deep deterministic policy gradient (Fujimoto et al., 2018).

A deterministic actor ``mu(s)`` and an ensemble of ``N`` Q-networks (two by default):

- ``loss_qvalue = sum_i d(Q_i(s, a), y)`` with ``y = r + gamma * (1 - terminated) *
  min_i Q'_i(s', a')``, where ``a' = clamp(mu'(s') + clamp(eps, -c, c), low, high)``,
  ``eps ~ N(0, policy_noise^2)``, ``c = noise_clip`` (target policy smoothing), ``mu'``
  and ``Q'`` the target parameters;
- ``loss_actor = -Q_1(s, mu(s))`` (the Q parameters are not trained by it).

The paper's third trick, updating the actor and the targets less often than the
critics, is the training loop's choice: see the example of :class:`TD3Loss`.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tdrl.modules import MLP, Actor, ValueOperator
    >>> from tdrl.specs import Bounded
    >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
    >>> qvalue = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]), in_keys=["observation", "action"])
    >>> loss = TD3Loss(actor, qvalue, action_spec=Bounded(-1.0, 1.0, shape=(1,)))
    >>> data = TensorDict({
    ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
    ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
    ...              "done": torch.zeros(8, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
    >>> out = loss(data)
    >>> out["pred_value"].shape  # one row per Q-network
    torch.Size([2, 8])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._off_policy import OffPolicyLoss, check_reads, check_writes
from tdrl.specs import Bounded, Composite, TensorSpec

__all__ = ["TD3Loss"]


def _bounds_from_spec(spec: TensorSpec | Composite, action_key: NestedKey) -> tuple[Tensor, Tensor]:
    """``(low, high)`` of a ``Bounded`` action spec (the leaf of a Composite, one env's worth)."""
    index: tuple[int, ...] = ()
    if isinstance(spec, Composite):
        leaf = spec.get(action_key)
        if leaf is None:
            raise ValueError(
                f"TD3Loss: the action spec is a Composite without {action_key!r} (it has "
                f"{list(spec.keys(True, True))}); pass action_spec=env.action_spec or bounds=(low, high)."
            )
        container = spec[action_key[:-1]].shape if isinstance(action_key, tuple) and len(action_key) > 1 else spec.shape
        index = (0,) * len(container)
        spec = leaf
    if not isinstance(spec, Bounded):
        raise ValueError(
            f"TD3Loss: the action spec must be Bounded (target policy smoothing clamps the noisy action "
            f"into it), got {type(spec).__name__}; pass a Bounded spec or bounds=(low, high)."
        )
    return spec.space.low[index], spec.space.high[index]


class TD3Loss(OffPolicyLoss):
    """Twin-delayed DDPG loss: clipped double-Q targets with target policy smoothing.

    Args:
        actor_network: a deterministic actor writing the action (``tdrl.modules.Actor``,
            or any TensorDict module with the action among its ``out_keys``).
        qvalue_network: ``Q(s, a)`` writing ``"state_action_value"`` ``[*B, 1]``; copied
            ``num_qvalue_nets`` times (see :class:`~tdrl.objectives.SACLoss`).

    Keyword Args:
        action_spec: a ``Bounded`` action spec (or a Composite holding one) whose bounds
            clamp the smoothed target action. Give this or ``bounds``.
        bounds: ``(low, high)`` instead of ``action_spec``.
        num_qvalue_nets: size of the Q-ensemble (default 2).
        policy_noise: standard deviation of the target-action noise (default 0.2).
        noise_clip: the noise is clamped into ``[-noise_clip, noise_clip]`` (default 0.5).
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"``.
        delay_actor: keep target actor parameters (default True).
        delay_qvalue: keep target Q parameters (default True).
        gamma: must be ``None``: pass ``gamma`` to :meth:`~tdrl.objectives.LossModule.make_value_estimator`.
        priority_key: where the per-sample TD error is written (also ``set_keys(priority=...)``).
        separate_losses: parameters shared with the actor are not trained by the Q loss.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        deactivate_vmap: call the Q-networks in a loop instead of ``torch.vmap``.
        use_prioritized_weights: weight by the input's ``"priority_weight"`` (``"auto"``).

    Raises:
        ValueError: without exactly one of ``action_spec``/``bounds``, for a spec that is
            not Bounded, ``low > high``, an actor that does not write the action or a
            Q-network that does not read it.

    Examples:
        Delayed policy updates: step the critics every update, the actor and the targets
        every ``policy_delay`` updates.

        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import MLP, Actor, ValueOperator
        >>> from tdrl.objectives import SoftUpdate
        >>> actor = Actor(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), in_keys=["observation"])
        >>> qvalue = ValueOperator(MLP(in_features=5, out_features=1), in_keys=["observation", "action"])
        >>> loss = TD3Loss(actor, qvalue, bounds=(-1.0, 1.0), policy_noise=0.2, noise_clip=0.5)
        >>> _ = loss.make_value_estimator("td0", gamma=0.99)
        >>> actor_optim = torch.optim.Adam(loss.actor_network.parameters(), lr=1e-3)
        >>> critic_optim = torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=1e-3)
        >>> updater = SoftUpdate(loss, tau=0.005)
        >>> policy_delay = 2
        >>> def sample():
        ...     return TensorDict({
        ...         "observation": torch.randn(16, 3), "action": torch.rand(16, 2) * 2 - 1,
        ...         "next": {"observation": torch.randn(16, 3), "reward": torch.randn(16, 1),
        ...                  "done": torch.zeros(16, 1, dtype=torch.bool),
        ...                  "terminated": torch.zeros(16, 1, dtype=torch.bool)}}, [16])
        >>> for update in range(4):
        ...     out = loss(sample())
        ...     update_actor = update % policy_delay == 0
        ...     # loss_actor sends no gradient to the Q-networks: one backward serves both
        ...     total = out["loss_qvalue"] + out["loss_actor"] if update_actor else out["loss_qvalue"]
        ...     critic_optim.zero_grad()
        ...     actor_optim.zero_grad()
        ...     total.backward()
        ...     critic_optim.step()
        ...     if update_actor:
        ...         actor_optim.step()
        ...         updater.step()
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by TD3; rename with ``set_keys``."""

        action: NestedKey = "action"
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
        "loss_qvalue",
        "pred_value",
        "state_action_value_actor",
        "next_state_value",
        "target_value",
    ]

    actor_network: TensorDictModuleBase
    actor_network_params: TensorDictBase
    qvalue_network: TensorDictModuleBase
    qvalue_network_params: TensorDictBase
    target_qvalue_network_params: TensorDictBase
    max_action: Tensor
    min_action: Tensor
    _actor_in: list[NestedKey]
    _q_obs_in: list[NestedKey]
    _q_call: Callable[[TensorDictBase, TensorDictBase], Tensor]

    def __init__(
        self,
        actor_network: nn.Module,
        qvalue_network: nn.Module,
        *,
        action_spec: TensorSpec | Composite | None = None,
        bounds: tuple[float | Tensor, float | Tensor] | None = None,
        num_qvalue_nets: int = 2,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        loss_function: str = "smooth_l1",
        delay_actor: bool = True,
        delay_qvalue: bool = True,
        gamma: float | None = None,
        priority_key: NestedKey | None = None,
        separate_losses: bool = False,
        reduction: str | None = None,
        deactivate_vmap: bool = False,
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
        self.delay_qvalue = delay_qvalue
        self.num_qvalue_nets = num_qvalue_nets
        self.policy_noise = float(policy_noise)
        self.noise_clip = float(noise_clip)
        if policy_noise < 0 or noise_clip < 0:
            raise ValueError(f"{name}: policy_noise and noise_clip must be >= 0, got {policy_noise}, {noise_clip}.")

        self._register_network(actor_network, "actor_network", create_target_params=delay_actor)
        actor_out = list(getattr(actor_network, "out_keys", []))
        q_in = list(getattr(qvalue_network, "in_keys", []))
        # the actor's one output read by Q is the action: e.g. ("agents", "action") of a group
        # (a ProbabilisticActor with TanhDelta also writes its distribution's parameters)
        sampled = list(getattr(actor_network, "dist_sample_keys", None) or [])
        written = [k for k in (sampled if len(sampled) == 1 else actor_out) if k in q_in]
        renamed = "action" not in actor_out and len(written) == 1
        action_key = written[0] if renamed else None
        shared = list(actor_network.parameters()) if separate_losses else []
        self._register_ensemble(
            qvalue_network, "qvalue_network", num_qvalue_nets, delay_qvalue, shared, deactivate_vmap
        )
        q_out = list(getattr(qvalue_network, "out_keys", []))
        self.set_keys(priority=priority_key, action=action_key)
        self.set_keys(
            state_action_value=q_out[0] if len(q_out) == 1 else None
        )  # the Q-network's one output  # the actor's one output, read by Q, is the action

        if (action_spec is None) == (bounds is None):
            raise ValueError(
                f"{name}: give exactly one of action_spec (e.g. env.action_spec) or bounds=(low, high); "
                f"got action_spec={action_spec!r} and bounds={bounds!r}."
            )
        low: float | Tensor
        high: float | Tensor
        if action_spec is not None:
            low, high = _bounds_from_spec(action_spec, self.tensor_keys.action)
        else:
            low, high = cast(tuple, bounds)  # not None: exactly one of the two was given
        device = next((p.device for p in self.parameters()), None)
        low_t = torch.as_tensor(low, dtype=torch.get_default_dtype(), device=device)
        high_t = torch.as_tensor(high, dtype=low_t.dtype, device=device)
        if bool((low_t > high_t).any()):
            raise ValueError(f"{name}: a low bound is above its high bound (low={low_t}, high={high_t}).")
        self.register_buffer("max_action", high_t.clone())
        self.register_buffer("min_action", low_t.clone())

    def _on_keys_changed(self) -> None:
        keys = self.tensor_keys
        check_writes(
            "TD3Loss",
            self.actor_network,
            keys.action,
            "actor_network",
            "Use a deterministic actor (tdrl.modules.Actor) writing the action, or .set_keys(action=...).",
        )
        check_reads(
            "TD3Loss",
            self.qvalue_network,
            keys.action,
            "qvalue_network",
            "Build it as ValueOperator(net, in_keys=['observation', 'action']).",
        )
        self._q_call = self._ensemble_caller(self.qvalue_network, keys.state_action_value)
        self._actor_in = list(self.actor_network.in_keys)
        self._q_obs_in = [k for k in self.qvalue_network.in_keys if k != keys.action]

    def _input_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys: list[NestedKey] = [k.action, ("next", k.reward), ("next", k.done), ("next", k.terminated)]
        for key in [*self._actor_in, *[("next", x) for x in self._actor_in], *self.qvalue_network.in_keys]:
            if key not in keys:
                keys.append(key)
        return keys

    # ------------------------------------------------------------------ terms
    def _act(self, data: TensorDictBase, params: TensorDictBase | None) -> Tensor:
        inputs = data.select(*self._actor_in)
        if params is None:
            return self.actor_network(inputs).get(self.tensor_keys.action)
        with params.to_module(self.actor_network):
            return self.actor_network(inputs).get(self.tensor_keys.action)

    def _q(self, data: TensorDictBase, action: Tensor | None, params: TensorDictBase) -> Tensor:
        if action is None:
            inputs = data.select(*self.qvalue_network.in_keys)
        else:
            inputs = data.select(*self._q_obs_in)
            inputs.set(self.tensor_keys.action, action)
        value = self._q_call(inputs, params)
        self._check_ensemble_out(value, data.batch_size, self.tensor_keys.state_action_value, 1)
        return value.squeeze(-1)

    def _next_state_value(self, data: TensorDictBase, noise: Tensor) -> Tensor:
        """``min_i Q'_i(s', a')`` ``[*B]`` with the smoothed target action ``a'``, without gradient."""
        with torch.no_grad():
            next_data = self._require(data, "next")
            target_actor = getattr(self, "target_actor_network_params", None)
            next_action = self._act(next_data, target_actor)
            next_action = (next_action + noise).clamp(self.min_action, self.max_action)
            return self._q(next_data, next_action, self.target_qvalue_network_params).min(0)[0]

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """The actor's loss alone, ``-Q_1(s, mu(s))`` (the Q-networks are not trained by it).

        TorchRL's split of :meth:`forward`: a loop that updates the actor every
        ``policy_delay`` updates computes it only then.

        Args:
            tensordict: ``[*B]`` transitions holding the actor's inputs.

        Returns:
            ``(loss_actor, {"state_action_value_actor": [N, *B]})``, the second detached.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from tensordict import TensorDict
            >>> from tdrl.modules import MLP, Actor, ValueOperator
            >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
            >>> qvalue = ValueOperator(MLP(in_features=4, out_features=1), in_keys=["observation", "action"])
            >>> loss = TD3Loss(actor, qvalue, bounds=(-1.0, 1.0))
            >>> loss_actor, info = loss.actor_loss(TensorDict(observation=torch.randn(8, 3), batch_size=[8]))
            >>> loss_actor.shape, info["state_action_value_actor"].shape
            (torch.Size([]), torch.Size([2, 8]))
        """
        try:
            weights = self._priority_weights(tensordict)
            actor_q = self._q(tensordict, self._act(tensordict, None), self._detached("qvalue_network"))
        except KeyError as err:
            raise self._diagnose(tensordict, err, [*self._actor_in, *self._q_obs_in]) from err
        return self._reduce_weighted(-actor_q[0], weights), {"state_action_value_actor": actor_q.detach()}

    def value_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, dict[str, Tensor]]:
        """The Q-networks' loss alone, against the smoothed clipped double-Q target.

        TorchRL's split of :meth:`forward`. It draws the target-action noise (so calling
        it, then :meth:`actor_loss`, draws what :meth:`forward` draws) and, unlike
        :meth:`forward`, writes nothing into ``tensordict``.

        Args:
            tensordict: ``[*B]`` transitions, as for :meth:`forward`.

        Returns:
            ``(loss_qvalue, metadata)`` with the detached ``"td_error"`` (squared, per
            Q-network, ``[N, *B]``), ``"next_state_value"`` and ``"target_value"`` ``[*B]``
            and ``"pred_value"`` ``[N, *B]``.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from tensordict import TensorDict
            >>> from tdrl.modules import MLP, Actor, ValueOperator
            >>> actor = Actor(nn.Sequential(nn.Linear(3, 1), nn.Tanh()), in_keys=["observation"])
            >>> qvalue = ValueOperator(MLP(in_features=4, out_features=1), in_keys=["observation", "action"])
            >>> loss = TD3Loss(actor, qvalue, bounds=(-1.0, 1.0))
            >>> data = TensorDict({
            ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
            ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
            ...              "done": torch.zeros(8, 1, dtype=torch.bool),
            ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
            >>> loss_qvalue, info = loss.value_loss(data)
            >>> loss_qvalue.shape, info["td_error"].shape, "td_error" in data.keys()
            (torch.Size([]), torch.Size([2, 8]), False)
        """
        try:
            weights = self._priority_weights(tensordict)
            stored = self._require(tensordict, self.tensor_keys.action)
            noise = (torch.randn_like(stored) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_value = self._next_state_value(tensordict, noise)
            target = self._target(tensordict, next_value.unsqueeze(-1))
            pred = self._q(tensordict, None, self.qvalue_network_params)
        except KeyError as err:
            raise self._diagnose(tensordict, err) from err
        loss_qvalue = self._reduce_weighted(self._distance(pred, target.expand_as(pred)).sum(0), weights)
        pred = pred.detach()
        metadata = {
            "td_error": (pred - target).pow(2),
            "next_state_value": next_value,
            "pred_value": pred,
            "target_value": target,
        }
        return loss_qvalue, metadata

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the TD3 losses of a batch of transitions.

        Args:
            tensordict: ``[*B]`` transitions (the networks' inputs at the root and under
                ``"next"``, the ``action``, ``("next", "reward"/"done"/"terminated")``);
                ``"td_error"`` ``[*B]`` is written into it.

        Returns:
            A TensorDict with ``loss_actor`` and ``loss_qvalue`` and the detached
            ``pred_value`` ``[N, *B]``, ``state_action_value_actor`` ``[N, *B]``,
            ``next_state_value`` and ``target_value`` ``[*B]``.
        """
        loss_actor, actor_info = self.actor_loss(tensordict)
        loss_qvalue, info = self.value_loss(tensordict)
        tensordict.set(self.tensor_keys.priority, info.pop("td_error").max(0)[0])
        return TensorDict({"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, **actor_info, **info}, batch_size=[])
