"""V-trace (IMPALA): value targets and advantages corrected for data collected by an older policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._keys import MissingKeyError, keys_repr
from tdrl.objectives.value.advantages import ValueEstimatorBase, _as_buffer
from tdrl.objectives.value.functional import vtrace_advantage_estimate

__all__ = ["VTrace"]

_LOG_PROB_SYNONYMS = {"sample_log_prob": "action_log_prob", "action_log_prob": "sample_log_prob"}
_MISSING_LOG_PROB = (
    "VTrace: key {key!r} (the log-probability of each action under the policy that collected it) "
    "is not in the input (keys: {keys}). Collect with an actor built with return_log_prob=True, "
    "or rename the key with .set_keys(sample_log_prob=...)."
)
_MISSING_ACTION = (
    "VTrace: key {key!r} (the actions taken) is not in the input (keys: {keys}); rename it with .set_keys(action=...)."
)


def _per_step(log_prob: Tensor, value: Tensor, what: str) -> Tensor:
    """``log_prob`` summed over the action's event dims, shaped like ``value`` (``[*B, T, 1]``)."""
    ndim = value.ndim - 1
    if log_prob.ndim > ndim:
        log_prob = log_prob.sum(dim=tuple(range(ndim, log_prob.ndim)))
    if log_prob.shape != value.shape[:-1]:
        raise ValueError(
            f"VTrace: the {what} has shape {tuple(log_prob.shape)}; expected one log-probability per step, "
            f"{tuple(value.shape[:-1])} (the value's shape without its last dim)."
        )
    return log_prob.unsqueeze(-1)


class VTrace(ValueEstimatorBase):
    """V-trace targets and advantages (Espeholt et al., 2018, IMPALA) for off-policy actor-critic.

    Actors that collect data run a policy ``mu`` a few updates older than the learner's
    ``pi``. V-trace weighs each step by the truncated importance ratio
    ``pi(a|s) / mu(a|s)`` (see
    :func:`~tdrl.objectives.value.functional.vtrace_advantage_estimate`): ``"value_target"``
    is the V-trace target ``vs`` and ``"advantage"`` the policy-gradient advantage. ``mu``'s
    log-probabilities are the ones the collector stored (``"sample_log_prob"``, or
    ``"action_log_prob"``); ``pi``'s are computed here with ``actor_network``, for the
    actions taken (``"action"``), without gradient into the actor.

    Args:
        gamma: discount factor (a scalar).
        actor_network: the policy being trained: a probabilistic actor with
            ``get_dist(td)`` (e.g. :class:`~tdrl.modules.ProbabilisticActor`).
        value_network: a TensorDict module writing ``"state_value"`` (``None``: the values
            are read from the data, at the root and under ``"next"``).
        rho_thresh: clip of the importance ratio in the targets and advantage (``rho-bar``).
        c_thresh: clip of the importance ratio in the trace (``c-bar``).
        average_adv: standardize the advantage (zero mean, unit std).
        shifted: accepted for TorchRL compatibility: tdrl already values the root and
            next observations in one network call (see ``reuse_next_values``).
        **kwargs: ``differentiable``, ``skip_existing``, ``time_dim``, ``device``,
            ``reuse_next_values`` and the key renames, as in
            :class:`~tdrl.objectives.value.ValueEstimatorBase`.

    Raises:
        ValueError: ``gamma`` is not a scalar.
        KeyError: (when called) the stored log-probability or the action is missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import NormalParamExtractor, TensorDictModule
        >>> from tdrl.modules import ProbabilisticActor, ValueOperator
        >>> net = TensorDictModule(torch.nn.Sequential(torch.nn.Linear(3, 4), NormalParamExtractor()),
        ...                        ["observation"], ["loc", "scale"])
        >>> actor = ProbabilisticActor(net, in_keys=["loc", "scale"], distribution_class=torch.distributions.Normal)
        >>> critic = ValueOperator(torch.nn.Linear(3, 1), in_keys=["observation"])
        >>> vtrace = VTrace(gamma=0.99, actor_network=actor, value_network=critic)
        >>> done = torch.zeros(4, 1, dtype=torch.bool)
        >>> data = TensorDict({"observation": torch.randn(4, 3), "action": torch.randn(4, 2),
        ...     "sample_log_prob": torch.randn(4),
        ...     "next": {"observation": torch.randn(4, 3), "reward": torch.randn(4, 1), "done": done,
        ...              "terminated": done}}, [4])
        >>> vtrace(data)["advantage"].shape, data["value_target"].shape
        (torch.Size([4, 1]), torch.Size([4, 1]))
    """

    @dataclass
    class _AcceptedKeys(ValueEstimatorBase._AcceptedKeys):
        """Input and output keys, renamable with :meth:`set_keys` (adds the action)."""

        action: NestedKey = "action"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    rho_thresh: Tensor
    c_thresh: Tensor

    def __init__(
        self,
        *,
        gamma: float | Tensor,
        actor_network: nn.Module,
        value_network: nn.Module | None,
        rho_thresh: float | Tensor = 1.0,
        c_thresh: float | Tensor = 1.0,
        average_adv: bool = False,
        shifted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(value_network=value_network, **kwargs)
        if not callable(getattr(actor_network, "get_dist", None)):
            raise TypeError(
                f"VTrace: actor_network must be a probabilistic actor with get_dist(td) "
                f"(e.g. tdrl.modules.ProbabilisticActor), got {type(actor_network).__name__}."
            )
        gamma_buffer = _as_buffer(gamma, self._device)
        if gamma_buffer.numel() != 1:
            raise ValueError(
                f"VTrace: gamma must be a scalar, got a tensor of shape {tuple(gamma_buffer.shape)}; "
                "for per-step discounts store ('steps_to_next_obs') in the data instead."
            )
        self.register_buffer("gamma", gamma_buffer)
        self.register_buffer("rho_thresh", _as_buffer(rho_thresh, self._device))
        self.register_buffer("c_thresh", _as_buffer(c_thresh, self._device))
        self.average_adv = average_adv
        self.shifted = shifted
        # Not registered, like the value network: the loss owns the actor's parameters.
        self.__dict__["actor_network"] = actor_network

    @property
    def in_keys(self) -> list[NestedKey]:
        actor_keys = list(getattr(self.actor_network, "in_keys", []))
        extra = [self.tensor_keys.sample_log_prob, self.tensor_keys.action]
        return super().in_keys + [k for k in actor_keys + extra if k not in super().in_keys]

    def _behaviour_log_prob(self, data: TensorDictBase) -> Tensor:
        key = self.tensor_keys.sample_log_prob
        log_mu = data.get(key, None)
        if log_mu is None and key in _LOG_PROB_SYNONYMS:
            log_mu = data.get(_LOG_PROB_SYNONYMS[key], None)
        if log_mu is None:
            raise MissingKeyError(_MISSING_LOG_PROB.format(key=key, keys=keys_repr(data)))
        return log_mu

    def _policy_log_prob(self, data: TensorDictBase) -> Tensor:
        action = data.get(self.tensor_keys.action, None)
        if action is None:
            raise MissingKeyError(_MISSING_ACTION.format(key=self.tensor_keys.action, keys=keys_repr(data)))
        actor: Any = self.actor_network
        in_keys = list(getattr(actor, "in_keys", []))
        with torch.no_grad():
            dist = actor.get_dist(data.select(*in_keys) if in_keys else data)
            return dist.log_prob(action)

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
        time_dim: int | None = None,
    ) -> TensorDictBase:
        """Writes ``advantage`` and ``value_target`` (and the values) into ``tensordict``.

        Args:
            tensordict: ``[*B, T]`` rollout with the actor's and value network's inputs,
                ``"action"``, the stored log-probability, and
                ``("next", "reward" / "done" / "terminated")``.
            params: parameters to run the value network with (``to_module`` style).
            target_params: parameters for the next-state values (default: ``params``).
            time_dim: override of the time dimension.

        Returns:
            ``tensordict``, updated in place.
        """
        time_dim, reward, done, terminated = self._signals(tensordict, time_dim)
        with torch.set_grad_enabled(self.differentiable):
            value, next_value = self._values(tensordict, reward.shape, params, target_params)
            log_mu = _per_step(self._behaviour_log_prob(tensordict), value, "stored log-probability")
            log_pi = _per_step(self._policy_log_prob(tensordict), value, "actor's log-probability")
            rho_thresh, c_thresh = self.rho_thresh.to(value.device), self.c_thresh.to(value.device)
            gamma = self._gamma(tensordict, reward)
            advantage, value_target = vtrace_advantage_estimate(
                gamma,
                log_pi,
                log_mu.to(log_pi.dtype),
                value,
                next_value,
                reward,
                done,
                terminated,
                rho_thresh=rho_thresh,
                c_thresh=c_thresh,
                time_dim=time_dim,
            )
            if self.average_adv:
                advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-5)
        tensordict.set(self.tensor_keys.advantage, advantage)
        tensordict.set(self.tensor_keys.value_target, value_target)
        return tensordict

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        *,
        next_value: Tensor | None = None,
        time_dim: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Returns the V-trace target only (computed on a shallow copy of ``tensordict``).

        Args:
            tensordict: as in :meth:`forward`.
            next_value: not supported: the trace needs the current values too. Write both
                values into the data and build the estimator with ``skip_existing=True``.
            time_dim: override of the time dimension.
            **kwargs: ``target_params``, as in :meth:`forward`.

        Raises:
            TypeError: ``next_value`` was given.
        """
        if next_value is not None:
            raise TypeError(
                "VTrace.value_estimate: next_value= is not supported (the trace also needs V(s) along the "
                "whole trajectory); write both values into the data and use skip_existing=True."
            )
        data = self.forward(tensordict.copy(), target_params=kwargs.get("target_params"), time_dim=time_dim)
        return data.get(self.tensor_keys.value_target)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma.item():.4g}, rho_thresh={self.rho_thresh.item():.4g}, "
            f"c_thresh={self.c_thresh.item():.4g}, differentiable={self.differentiable}"
        )
