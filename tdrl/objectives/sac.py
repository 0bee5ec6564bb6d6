"""SAC: soft actor-critic (Haarnoja et al., 2018), the form without a state-value network.

With an ensemble of ``N`` Q-networks (two by default) and the entropy weight
``alpha = exp(log_alpha)``:

- ``loss_qvalue = sum_i d(Q_i(s, a), y)`` with the target
  ``y = r + gamma * (1 - terminated) * min_i [Q'_i(s', a') - alpha * log pi(a'|s')]``,
  ``a' ~ pi(.|s')`` and ``Q'`` the target parameters (no gradient);
- ``loss_actor = alpha * log pi(a~|s) - min_i Q_i(s, a~)`` with ``a~ ~ pi(.|s)``
  reparameterized (the Q parameters are not trained by it);
- ``loss_alpha = -log_alpha * (log pi(a~|s) + target_entropy)``.

A truncated step (``("next", "truncated")``) still bootstraps from ``s'``; only
``("next", "terminated")`` stops it. A plain Q-network (``ValueOperator`` or
``TensorDictModule`` around an ``nn.Module``) runs once per member with that member's
parameters swapped in, which costs what as many hand-written Q modules cost; any other
runs the ensemble in one ``torch.vmap`` call.
The discrete-action variant is :class:`~tdrl.objectives.DiscreteSACLoss`.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from tdrl.modules import MLP, NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
    >>> from tdrl.specs import Bounded
    >>> actor = ProbabilisticActor(
    ...     TensorDictModule(nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[32]), NormalParamExtractor()),
    ...                      in_keys=["observation"], out_keys=["loc", "scale"]),
    ...     in_keys=["loc", "scale"], spec=Bounded(-1.0, 1.0, shape=(1,)), distribution_class=TanhNormal)
    >>> qvalue = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[32]), in_keys=["observation", "action"])
    >>> loss = SACLoss(actor, qvalue)
    >>> data = TensorDict({
    ...     "observation": torch.randn(8, 3), "action": torch.rand(8, 1) * 2 - 1,
    ...     "next": {"observation": torch.randn(8, 3), "reward": torch.randn(8, 1),
    ...              "done": torch.zeros(8, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(8, 1, dtype=torch.bool)}}, [8])
    >>> out = loss(data)
    >>> sorted(out.keys())
    ['alpha', 'entropy', 'loss_actor', 'loss_alpha', 'loss_qvalue']
    >>> data["td_error"].shape  # written back for a prioritized replay buffer
    torch.Size([8])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._actor_critic import check_actor
from tdrl.objectives._off_policy import OffPolicyLoss, _MemberLoop, check_reads, member_loop, rsample_and_log_prob
from tdrl.specs import Composite, TensorSpec

__all__ = ["SACLoss"]

_V1_UNSUPPORTED = (
    "SACLoss: a value_network (the first SAC paper's V(s) network) is not supported; tdrl implements "
    "the form without it, which TorchRL uses by default too. Drop the value_network argument."
)


def _action_numel(spec: TensorSpec | Composite, action_key: NestedKey) -> int:
    """Elements of one action: the leaf's shape beyond the Composite's batch shape."""
    if not isinstance(spec, Composite):
        return spec.shape.numel()
    leaf = spec.get(action_key)
    if leaf is None:
        raise ValueError(
            f"SACLoss: the action spec is a Composite without {action_key!r} (it has "
            f"{list(spec.keys(True, True))}); pass action_spec=env.action_spec or target_entropy=<float>."
        )
    container = spec.shape
    if isinstance(action_key, tuple) and len(action_key) > 1:
        container = spec[action_key[:-1]].shape
    if isinstance(leaf, Composite):
        return sum(s.shape[len(container) :].numel() for s in leaf.values(True, True))
    return leaf.shape[len(container) :].numel()


class SACLoss(OffPolicyLoss):
    """Soft actor-critic loss with a Q-ensemble and a learned (or fixed) entropy weight.

    Args:
        actor_network: a probabilistic actor with ``get_dist(td)`` whose distribution can
            be reparameterized (``ProbabilisticActor(..., distribution_class=TanhNormal)``).
        qvalue_network: ``Q(s, a)``: a TensorDict module that reads the action and writes
            ``"state_action_value"`` ``[*B, 1]``. It is copied ``num_qvalue_nets`` times,
            each copy with its own parameters (the first keeps the module's values, the
            others are drawn uniformly within each tensor's range, as TorchRL draws them).
        value_network: not supported (SAC with a separate ``V(s)``); must be ``None``.

    Keyword Args:
        num_qvalue_nets: size of the Q-ensemble (default 2).
        loss_function: ``"smooth_l1"`` (default), ``"l2"`` or ``"l1"`` for the Q regression.
        alpha_init: initial entropy weight (default 1.0).
        min_alpha, max_alpha: bounds ``log_alpha`` is clamped into before each use.
        action_spec: the action spec for ``target_entropy="auto"`` (default: the actor's ``spec``).
        fixed_alpha: keep ``alpha`` at ``alpha_init`` (``log_alpha`` is then a buffer).
        target_entropy: ``"auto"`` (``-prod(action shape)``) or a number.
        delay_actor: keep target actor parameters (``target_actor_network_params``; SAC
            draws the next action with the live actor, as TorchRL does).
        delay_qvalue: keep target Q parameters (default True), updated by
            ``SoftUpdate``/``HardUpdate``.
        delay_value: accepted for TorchRL compatibility (no value network here).
        gamma: must be ``None``: pass ``gamma`` to :meth:`~tdrl.objectives.LossModule.make_value_estimator`.
        priority_key: where the per-sample TD error is written (also ``set_keys(priority=...)``).
        separate_losses: parameters the Q-network shares with the actor are not trained by
            the Q loss.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses).
        skip_done_states: give terminated next states a zero value before the target (their
            value is discarded anyway; this also keeps a NaN observation stored there out of
            the loss). TorchRL skips every *done* state, truncated ones included, whose
            bootstrap value it then zeroes; tdrl keeps bootstrapping truncated states.
        deactivate_vmap: call the Q-networks one after the other instead of ``torch.vmap``
            (a plain Q-network is called per member in either case).
        use_prioritized_weights: ``"auto"``/``True``: weight the per-sample losses by the
            input's ``"priority_weight"`` when it holds one (``False``: never).
        scalar_output_mode: with ``reduction="none"``, ``"exclude"`` leaves ``alpha`` and
            ``entropy`` out of the output, ``"non_tensor"`` keeps them as non-tensor entries.

    Raises:
        TypeError: for an actor without ``get_dist``, a ``value_network`` or ``gamma``.
        ValueError: for a Q-network that does not read the action, an unknown
            ``loss_function``/``reduction``, or ``target_entropy="auto"`` without an action spec.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import MLP, NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
        >>> from tdrl.objectives import SoftUpdate
        >>> from tdrl.specs import Bounded
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(nn.Sequential(MLP(in_features=3, out_features=4), NormalParamExtractor()),
        ...                      in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=TanhNormal)
        >>> qvalue = ValueOperator(MLP(in_features=5, out_features=1), in_keys=["observation", "action"])
        >>> loss = SACLoss(actor, qvalue, action_spec=Bounded(-1.0, 1.0, shape=(2,)), alpha_init=0.2)
        >>> loss.target_entropy
        tensor(-2.)
        >>> loss.make_value_estimator("td0", gamma=0.98)  # doctest: +ELLIPSIS
        SACLoss(...)
        >>> updater = SoftUpdate(loss, tau=0.005)  # call updater.step() after each optimizer step
        >>> loss.qvalue_network_params.batch_size  # one parameter set per Q-network
        torch.Size([2])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by SAC; rename with ``set_keys``."""

        action: NestedKey = "action"
        value: NestedKey = "state_value"
        state_action_value: NestedKey = "state_action_value"
        log_prob: NestedKey = "sample_log_prob"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    out_keys = ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"]  # noqa: RUF012 (TorchRL's class attribute)

    actor_network: ProbabilisticTensorDictSequential
    qvalue_network: TensorDictModuleBase
    qvalue_network_params: TensorDictBase
    target_qvalue_network_params: TensorDictBase
    target_entropy: Tensor
    _actor_in: list[NestedKey]
    _q_obs_in: list[NestedKey]
    _q_call: Callable[[TensorDictBase, TensorDictBase], Tensor]
    _q_loop: _MemberLoop | None

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        qvalue_network: nn.Module,
        value_network: nn.Module | None = None,
        *,
        num_qvalue_nets: int = 2,
        loss_function: str = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        action_spec: TensorSpec | Composite | None = None,
        fixed_alpha: bool = False,
        target_entropy: str | float = "auto",
        delay_actor: bool = False,
        delay_qvalue: bool = True,
        delay_value: bool = True,
        gamma: float | None = None,
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
        if value_network is not None:
            raise TypeError(_V1_UNSUPPORTED)
        if gamma is not None:
            raise TypeError(f"{name}: gamma is not a loss argument; use loss.make_value_estimator(gamma={gamma}).")
        check_actor(name, actor_network)
        self.reduction = self._check_common(loss_function, reduction)
        self.loss_function = loss_function
        self.use_prioritized_weights = use_prioritized_weights
        self.skip_done_states = skip_done_states
        self.delay_actor = delay_actor
        self.delay_qvalue = delay_qvalue
        self.delay_value = delay_value
        self.num_qvalue_nets = num_qvalue_nets

        self._register_network(actor_network, "actor_network", create_target_params=delay_actor)
        shared = list(actor_network.parameters()) if separate_losses else []
        self._register_ensemble(
            qvalue_network, "qvalue_network", num_qvalue_nets, delay_qvalue, shared, deactivate_vmap
        )
        self._register_alpha(alpha_init, min_alpha, max_alpha, fixed_alpha)
        self.scalar_output_mode = self._check_scalar_output_mode(scalar_output_mode)

        log_prob_keys = list(getattr(actor_network, "log_prob_keys", None) or [])
        sample_keys = list(getattr(actor_network, "dist_sample_keys", None) or [])
        q_out = list(getattr(qvalue_network, "out_keys", []))
        self.set_keys(
            state_action_value=q_out[0] if len(q_out) == 1 else None,  # the Q-network's one output
            priority=priority_key,
            log_prob=log_prob_keys[0] if len(log_prob_keys) == 1 else None,
            action=sample_keys[0] if len(sample_keys) == 1 else None,
        )
        self._target_entropy_arg = target_entropy
        self._action_spec = action_spec
        self.register_buffer("target_entropy", self._resolve_target_entropy())

    def _resolve_target_entropy(self) -> Tensor:
        device = self.log_alpha.device
        target = self._target_entropy_arg
        if target != "auto":
            if isinstance(target, str):
                raise ValueError(f"SACLoss: target_entropy={target!r} is unknown; pass 'auto' or a number.")
            return torch.tensor(float(target), device=device)
        spec = self._action_spec if self._action_spec is not None else getattr(self.actor_network, "spec", None)
        if spec is None:
            raise ValueError(
                "SACLoss: target_entropy='auto' is -(number of action elements), read from an action "
                "spec, but neither action_spec nor the actor's spec is set. Pass "
                "action_spec=env.action_spec, ProbabilisticActor(..., spec=env.action_spec), or a "
                "number as target_entropy."
            )
        return torch.tensor(-float(_action_numel(spec, self.tensor_keys.action)), device=device)

    def _on_keys_changed(self) -> None:
        keys = self.tensor_keys
        check_reads(
            "SACLoss",
            self.qvalue_network,
            keys.action,
            "qvalue_network",
            "Build it as ValueOperator(net, in_keys=['observation', 'action']) (or rename the action with "
            ".set_keys(action=...)).",
        )
        self._q_call = self._ensemble_caller(self.qvalue_network, keys.state_action_value)
        self._q_loop = member_loop(self.qvalue_network, keys.state_action_value, self.qvalue_network_params)
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
    def _actor_sample(self, data: TensorDictBase) -> tuple[Tensor, Tensor]:
        """``(a~, log pi(a~|s))`` for each state of ``data``; the log-prob is ``[*B]``."""
        dist = self.actor_network.get_dist(data.select(*self._actor_in))
        action, log_prob = rsample_and_log_prob("SACLoss", dist)
        # one log-prob per action vector: [*B], or [*B, n_agents] for a group of agents
        expected = action.shape[:-1] if action.ndim > data.batch_dims else data.batch_size
        if log_prob.shape != expected:
            raise ValueError(
                f"SACLoss: the actor's log-probability has shape {tuple(log_prob.shape)}; expected "
                f"{tuple(expected)} (one value per action vector of shape {tuple(action.shape)}). Use a "
                "distribution over the whole action vector (TanhNormal, IndependentNormal), not a per-element Normal."
            )
        return action, log_prob

    def _q(self, data: TensorDictBase, action: Tensor | None, params: TensorDictBase) -> Tensor:
        """``[N, *B]`` Q-values of ``data``'s states and ``action`` (default: the stored action)."""
        loop = self._q_loop
        if loop is not None and loop.usable():
            action_key = self.tensor_keys.action
            args = [action if action is not None and k == action_key else self._require(data, k) for k in loop.in_keys]
            value = loop(args, params)
        else:
            if action is None:
                inputs = data.select(*self.qvalue_network.in_keys)
            else:
                inputs = data.select(*self._q_obs_in)
                inputs.set(self.tensor_keys.action, action)
            value = self._q_call(inputs, params)
        self._check_ensemble_out(value, data.batch_size, self.tensor_keys.state_action_value, 1)
        return value.squeeze(-1)

    def _next_state_value(self, data: TensorDictBase) -> Tensor:
        """``min_i [Q'_i(s', a') - alpha * log pi(a'|s')]``, ``[*B, 1]``, without gradient."""
        with torch.no_grad():
            next_data = self._require(data, "next")
            next_action, next_log_prob = self._actor_sample(next_data)
            next_q = self._q(next_data, next_action, self.target_qvalue_network_params)
            next_value = (next_q - self._alpha * next_log_prob).min(0)[0].unsqueeze(-1)
            if self.skip_done_states:
                terminated = self._require(next_data, self.tensor_keys.terminated)
                next_value = next_value.masked_fill(terminated.view_as(next_value), 0.0)
        return next_value

    def _qvalue_loss(self, data: TensorDictBase, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        target = self._target(data, self._next_state_value(data))
        pred = self._q(data, None, self.qvalue_network_params)
        td_error = (pred - target).abs().detach().max(0)[0]
        loss = self._distance(pred, target.expand_as(pred)).sum(0)
        return self._reduce_weighted(loss, weights), td_error

    def _actor_loss(self, data: TensorDictBase, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        action, log_prob = self._actor_sample(data)
        min_q = self._q(data, action, self._detached("qvalue_network")).min(0)[0]
        loss = self._alpha * log_prob - min_q
        return self._reduce_weighted(loss, weights), log_prob.detach()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the SAC losses of a batch of transitions.

        Args:
            tensordict: ``[*B]`` transitions with the networks' inputs at the root and under
                ``"next"``, the ``action`` and ``("next", "reward"/"done"/"terminated")``.
                ``"td_error"`` ``[*B]`` is written into it (for a prioritized buffer).

        Returns:
            A TensorDict with ``loss_actor``, ``loss_qvalue``, ``loss_alpha`` and the
            detached ``alpha`` and ``entropy`` (mean of ``-log pi``).
        """
        try:
            weights = self._priority_weights(tensordict)
            loss_qvalue, td_error = self._qvalue_loss(tensordict, weights)
            loss_actor, log_prob = self._actor_loss(tensordict, weights)
        except KeyError as err:
            raise self._diagnose(tensordict, err) from err
        loss_alpha = self._reduce_weighted(-self.log_alpha * (log_prob + self.target_entropy), weights)
        tensordict.set(self.tensor_keys.priority, td_error)
        return self._pack(
            tensordict,
            {"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, "loss_alpha": loss_alpha},
            {"alpha": self._alpha, "entropy": -log_prob.mean()},
        )
