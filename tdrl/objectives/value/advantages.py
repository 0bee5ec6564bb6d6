"""Value estimators: modules that read a rollout and write ``advantage`` and ``value_target``.

An estimator reads ``[*B, T]`` data (time on the last batch dim unless told otherwise),
runs its value network once over the root and ``"next"`` observations together (on a
``[T]`` batch, only over the next observations that are not the following row's), and
solves its return recursion with the kernels of :mod:`tdrl.objectives.value.functional`.
How the values are obtained lives in ``_advantages_values.py``; the time dim, the step
signals and their checks in ``_advantages_inputs.py``.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> value_net = TensorDictModule(torch.nn.Linear(3, 1), in_keys=["observation"], out_keys=["state_value"])
    >>> gae = GAE(gamma=0.99, lmbda=0.95, value_network=value_net)
    >>> data = TensorDict({
    ...     "observation": torch.randn(2, 10, 3),
    ...     "next": {"observation": torch.randn(2, 10, 3), "reward": torch.randn(2, 10, 1),
    ...              "done": torch.zeros(2, 10, 1, dtype=torch.bool),
    ...              "terminated": torch.zeros(2, 10, 1, dtype=torch.bool)},
    ... }, batch_size=[2, 10])
    >>> data = gae(data)
    >>> data["advantage"].shape, data["value_target"].shape
    (torch.Size([2, 10, 1]), torch.Size([2, 10, 1]))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives._keys import next_key, rename_keys
from tdrl.objectives.value._advantages_inputs import _BAD_VALUE_SHAPE as _BAD_VALUE_SHAPE
from tdrl.objectives.value._advantages_inputs import _MISSING_SIGNAL as _MISSING_SIGNAL
from tdrl.objectives.value._advantages_inputs import _as_buffer, _check_value_shape, _resolve_time_dim, _step_signal
from tdrl.objectives.value._advantages_values import _MISSING_VALUE as _MISSING_VALUE
from tdrl.objectives.value._advantages_values import _nan_to_root as _nan_to_root
from tdrl.objectives.value._advantages_values import _stored_values, _values_in_one_call, _values_with_params
from tdrl.objectives.value.functional import (
    generalized_advantage_estimate,
    td0_return_estimate,
    td_lambda_return_estimate,
)

__all__ = [
    "ValueEstimatorBase",
    "GAE",
    "TD0Estimator",
    "TD1Estimator",
    "TDLambdaEstimator",
    "TD0Estimate",
    "TD1Estimate",
    "TDLambdaEstimate",
]


def _standardize(x: Tensor) -> Tensor:
    if x.numel() <= 1:
        return x
    return (x - x.mean()) / x.std().clamp_min(1e-4)


class ValueEstimatorBase(nn.Module):
    """Shared machinery of the estimators: keys, value-network calls, checks.

    Subclasses implement ``_estimate``, which maps the value, next value and the
    step signals to ``(advantage, value_target)``.

    Args:
        value_network: a TensorDict module writing ``"state_value"`` (or the renamed
            value key) of shape ``[*B, T, 1]``. ``None``: the values must already be in
            the data, at the root and under ``"next"``.
        differentiable: let gradients flow through the value network into the
            advantage and target (default: computed under ``torch.no_grad()``).
        skip_existing: reuse ``"state_value"`` / ``("next", "state_value")`` already in
            the data instead of calling the network. Default ``None`` (= ``False``):
            recompute, which is what an epoch loop over a refreshed critic needs.
        time_dim: the time dimension of the input TensorDict. Default: the dim named
            ``"time"`` if any, else the last batch dim.
        reuse_next_values: on a one-dim ``[T]`` batch (one env's rollout, or a flat
            buffer of them), evaluate the network on a ``"next"`` observation only where it
            differs from the following row's observation (at resets and the last step) and
            take the following row's value elsewhere: about half the network calls, the
            same numbers for a network that is a function of its inputs. ``False`` always
            evaluates both (e.g. for a critic with per-call noise). Default ``True``.
        device: device of the ``gamma``/``lmbda`` buffers.
        advantage_key, value_target_key, value_key: key renames (same as ``set_keys``).
        shifted: TorchRL's one-pass ``[T + 1]`` value-network mode. Only ``False`` (the
            default) is accepted; ``reuse_next_values`` already saves the second pass.

    A ``NaN`` in a ``"next"`` input of the value network (what
    :class:`~tdrl.envs.transforms.NextStateReconstructor` writes at trajectory ends of
    data collected with ``compact_obs=True``) is replaced by the root input of the same
    step before the network runs, as TorchRL does: at a terminal step the next value is
    then masked out; at a truncated one it stands for the missing next observation.
    The caller's data is not changed.
    """

    @dataclass
    class _AcceptedKeys:
        """Input and output keys, renamable with :meth:`set_keys`."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        sample_log_prob: NestedKey = "sample_log_prob"

    default_keys = _AcceptedKeys

    # Kept in __dict__, not registered (see __init__). It is called on TensorDicts and read for
    # its in_keys: a TensorDict module, whatever nn.Module type the constructor was given.
    value_network: TensorDictModuleBase | None
    # buffers, registered by the subclasses (lmbda by those that have one)
    gamma: Tensor
    lmbda: Tensor

    def __init__(
        self,
        *,
        value_network: nn.Module | None,
        differentiable: bool = False,
        skip_existing: bool | None = None,
        time_dim: int | None = None,
        reuse_next_values: bool = True,
        device: torch.device | str | None = None,
        advantage_key: NestedKey | None = None,
        value_target_key: NestedKey | None = None,
        value_key: NestedKey | None = None,
        shifted: bool = False,
    ) -> None:
        super().__init__()
        if shifted is not False:
            raise ValueError(
                f"{type(self).__name__}: shifted={shifted!r} is not supported; tdrl runs the value network over the "
                "root and 'next' inputs, and reuse_next_values=True (the default) skips the next rows that repeat "
                "the following root. Fix: drop shifted= (or pass shifted=False)."
            )
        self.shifted = False
        self.reuse_next_values = bool(reuse_next_values)
        # Not registered as a submodule: the loss (or the user) owns the network's
        # parameters; the estimator only calls it.
        self.__dict__["value_network"] = value_network
        self.differentiable = differentiable
        self.skip_existing = bool(skip_existing)
        self.time_dim = time_dim
        self._device = torch.device(device) if device is not None else None
        self.tensor_keys = self.default_keys()
        renames = {
            "advantage": advantage_key,
            "value_target": value_target_key,
            "value": value_key,
        }
        self.set_keys(**{k: v for k, v in renames.items() if v is not None})

    # ------------------------------------------------------------------ keys
    def set_keys(self, **kwargs: NestedKey) -> ValueEstimatorBase:
        """Renames input/output keys, e.g. ``set_keys(advantage="adv", value="v")``.

        ``advantage_key=...`` spellings are accepted too. Returns ``self``.
        """
        rename_keys(type(self).__name__, self.tensor_keys, kwargs)
        return self

    @property
    def advantage_key(self) -> NestedKey:
        return self.tensor_keys.advantage

    @property
    def value_target_key(self) -> NestedKey:
        return self.tensor_keys.value_target

    @property
    def value_key(self) -> NestedKey:
        return self.tensor_keys.value

    @property
    def in_keys(self) -> list[NestedKey]:
        keys = self.tensor_keys
        out = [next_key(keys.reward), next_key(keys.done), next_key(keys.terminated)]
        net_keys = list(getattr(self.value_network, "in_keys", [keys.value]))
        return out + net_keys + [next_key(k) for k in net_keys]

    @property
    def out_keys(self) -> list[NestedKey]:
        return [self.tensor_keys.advantage, self.tensor_keys.value_target]

    # ------------------------------------------------------------- helpers
    def _get_time_dim(self, time_dim: int | None, data: TensorDictBase) -> int:
        return _resolve_time_dim(type(self).__name__, self.time_dim if time_dim is None else time_dim, data)

    def _signal(self, data: TensorDictBase, field: str, default: Tensor | None = None) -> Tensor:
        return _step_signal(type(self).__name__, data, getattr(self.tensor_keys, field), field, default)

    def _call_value_network(self, data: TensorDictBase, reward_shape: torch.Size) -> tuple[Tensor, Tensor]:
        """Returns ``(value, next_value)`` and writes both into ``data``."""
        owner, key, net = type(self).__name__, self.tensor_keys.value, self.value_network
        if net is None or self.skip_existing:
            value, next_value = _stored_values(owner, data, key, has_network=net is not None)
            if value is not None and next_value is not None:
                self._check_value_shape(value, reward_shape)
                return value, next_value
        net = cast(TensorDictModuleBase, net)  # without a network the block above returned or raised
        return _values_in_one_call(owner, net, data, key, reward_shape, self._check_value_shape, self.reuse_next_values)

    def _check_value_shape(self, value: Tensor, reward_shape: torch.Size) -> None:
        keys = self.tensor_keys
        _check_value_shape(type(self).__name__, value, reward_shape, keys.value, keys.reward)

    def _gamma(self, data: TensorDictBase, reward: Tensor) -> float | Tensor:
        """The discount: a Python float when it is one number (the kernels' fast path)."""
        steps = data.get(self.tensor_keys.steps_to_next_obs, None)
        if steps is None and self.gamma.numel() == 1:
            return self.gamma.item()
        gamma = self.gamma if self.gamma.device == reward.device else self.gamma.to(reward.device)
        if steps is not None:
            gamma = gamma ** steps.view_as(reward)
        return gamma

    def _lmbda(self, reward: Tensor) -> float | Tensor:
        if self.lmbda.numel() == 1:
            return self.lmbda.item()
        return self.lmbda if self.lmbda.device == reward.device else self.lmbda.to(reward.device)

    # ------------------------------------------------------------ forward
    def _estimate(
        self,
        value: Tensor,
        next_value: Tensor,
        reward: Tensor,
        done: Tensor,
        terminated: Tensor,
        gamma: float | Tensor,
        time_dim: int,
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
        time_dim: int | None = None,
    ) -> TensorDictBase:
        """Writes ``advantage`` and ``value_target`` into ``tensordict`` (and the values).

        Args:
            tensordict: ``[*B, T]`` rollout with ``("next", "reward"/"done"/"terminated")``
                and the value network's inputs at the root and under ``"next"``.
            params: parameters to run the value network with (``to_module`` style).
            target_params: parameters for the next-state values (default: ``params``).
            time_dim: override of the time dimension.

        Returns:
            ``tensordict``, updated in place.
        """
        time_dim, reward, done, terminated = self._signals(tensordict, time_dim)
        with torch.set_grad_enabled(self.differentiable):
            value, next_value = self._values(tensordict, reward.shape, params, target_params)
            gamma = self._gamma(tensordict, reward)
            advantage, value_target = self._estimate(value, next_value, reward, done, terminated, gamma, time_dim)
            if getattr(self, "average_gae", False):
                advantage = _standardize(advantage)
        tensordict.set(self.tensor_keys.advantage, advantage)
        tensordict.set(self.tensor_keys.value_target, value_target)
        return tensordict

    def _signals(self, tensordict: TensorDictBase, time_dim: int | None) -> tuple[int, Tensor, Tensor, Tensor]:
        """The time dim, and the step's reward, done and terminated (terminated defaults to done)."""
        if tensordict.batch_dims < 1:
            raise ValueError(
                f"{type(self).__name__}: expected a TensorDict with at least one batch dim "
                f"(time), got batch_size {tuple(tensordict.batch_size)}."
            )
        time_dim = self._get_time_dim(time_dim, tensordict)
        reward = self._signal(tensordict, "reward")
        done = self._signal(tensordict, "done")
        return time_dim, reward, done, self._signal(tensordict, "terminated", default=done)

    def _values(
        self, tensordict: TensorDictBase, reward_shape: torch.Size, params: Any, target_params: Any
    ) -> tuple[Tensor, Tensor]:
        """The values of the step and of the next one, with ``params``/``target_params`` if given."""
        if params is not None or target_params is not None:
            return self._values_with_params(tensordict, reward_shape, params, target_params)
        return self._call_value_network(tensordict, reward_shape)

    def _values_with_params(
        self,
        data: TensorDictBase,
        reward_shape: torch.Size,
        params: TensorDictBase | None,
        target_params: TensorDictBase | None,
    ) -> tuple[Tensor, Tensor]:
        net = self.value_network
        if net is None:
            raise ValueError(f"{type(self).__name__}: params were given but there is no value_network.")
        # forward only comes here with one of the two, which then stands for both
        params = cast(TensorDictBase, params if params is not None else target_params)
        target_params = target_params if target_params is not None else params
        key = self.tensor_keys.value
        return _values_with_params(net, data, key, reward_shape, self._check_value_shape, params, target_params)

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        *,
        next_value: Tensor | None = None,
        time_dim: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Returns the value target only (does not write into ``tensordict``).

        Args:
            tensordict: as in :meth:`forward`.
            next_value: precomputed ``V(s')`` (e.g. from a target network); default:
                computed with the value network.
            time_dim: override of the time dimension.
            **kwargs: accepted for compatibility (``target_params``) and ignored unless
                ``target_params`` is a TensorDict of parameters.
        """
        time_dim = self._get_time_dim(time_dim, tensordict)
        reward = self._signal(tensordict, "reward")
        done = self._signal(tensordict, "done")
        terminated = self._signal(tensordict, "terminated", default=done)
        with torch.set_grad_enabled(self.differentiable):
            key = self.tensor_keys.value
            if next_value is None:
                target_params = kwargs.get("target_params")
                nxt = tensordict.get("next")
                if self.value_network is None:
                    next_value = nxt.get(key)
                elif target_params is not None:
                    with target_params.to_module(self.value_network):
                        next_value = self.value_network(nxt.select(*self.value_network.in_keys)).get(key)
                else:
                    next_value = self.value_network(nxt.select(*self.value_network.in_keys)).get(key)
            self._check_value_shape(next_value, reward.shape)
            value = tensordict.get(key, None)
            if value is None:
                value = torch.zeros_like(next_value)
            _, target = self._estimate(
                value, next_value, reward, done, terminated, self._gamma(tensordict, reward), time_dim
            )
        return target

    def extra_repr(self) -> str:
        lmbda = f", lmbda={self.lmbda.item():.4g}" if hasattr(self, "lmbda") else ""
        return f"gamma={self.gamma.item():.4g}{lmbda}, differentiable={self.differentiable}"


class GAE(ValueEstimatorBase):
    """Generalized advantage estimation (Schulman et al., 2016).

    Args:
        gamma: discount factor.
        lmbda: GAE lambda (bias/variance trade-off; ``1`` = Monte-Carlo advantage).
        value_network: TensorDict module writing ``"state_value"`` (see
            :class:`ValueEstimatorBase` for this and the other shared arguments).
        average_gae: standardize the advantage (zero mean, unit std) after computing it.
            ``value_target`` is not affected.
        vectorized: accepted for TorchRL compatibility; tdrl's kernel is always the
            vectorized log-depth scan.
        **kwargs: ``differentiable``, ``skip_existing``, ``time_dim``, ``device`` and the
            key renames, as in :class:`ValueEstimatorBase`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> value_net = TensorDictModule(torch.nn.Linear(3, 1), in_keys=["obs"], out_keys=["state_value"])
        >>> gae = GAE(gamma=0.98, lmbda=0.94, value_network=value_net, average_gae=True)
        >>> data = TensorDict({"obs": torch.randn(1, 5, 3),
        ...     "next": {"obs": torch.randn(1, 5, 3), "reward": torch.randn(1, 5, 1),
        ...              "done": torch.zeros(1, 5, 1, dtype=torch.bool)}}, [1, 5])
        >>> abs(gae(data)["advantage"].mean().item()) < 1e-6
        True
    """

    def __init__(
        self,
        *,
        gamma: float | Tensor,
        lmbda: float | Tensor,
        value_network: nn.Module | None,
        average_gae: bool = False,
        vectorized: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(value_network=value_network, **kwargs)
        self.register_buffer("gamma", _as_buffer(gamma, self._device))
        self.register_buffer("lmbda", _as_buffer(lmbda, self._device))
        self.average_gae = average_gae

    def _estimate(self, value, next_value, reward, done, terminated, gamma, time_dim):
        return generalized_advantage_estimate(
            gamma, self._lmbda(reward), value, next_value, reward, done, terminated, time_dim=time_dim
        )


class TD0Estimator(ValueEstimatorBase):
    """One-step TD target ``r + gamma * V(s')`` (no bootstrap after termination).

    Args:
        gamma: discount factor.
        value_network: TensorDict module writing ``"state_value"``.
        average_rewards: standardize the rewards before computing the target.
        **kwargs: as in :class:`ValueEstimatorBase`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"state_value": torch.zeros(3, 1),
        ...     "next": {"state_value": torch.ones(3, 1), "reward": torch.ones(3, 1),
        ...              "done": torch.tensor([[False], [False], [True]])}}, [3])
        >>> TD0Estimator(gamma=0.5, value_network=None)(data)["value_target"].flatten()
        tensor([1.5000, 1.5000, 1.0000])
    """

    def __init__(
        self,
        *,
        gamma: float | Tensor,
        value_network: nn.Module | None,
        average_rewards: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(value_network=value_network, **kwargs)
        self.register_buffer("gamma", _as_buffer(gamma, self._device))
        self.average_rewards = average_rewards

    def _estimate(self, value, next_value, reward, done, terminated, gamma, time_dim):
        if self.average_rewards:
            reward = _standardize(reward)
        target = td0_return_estimate(gamma, next_value, reward, terminated)
        return target - value, target

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        *,
        next_value: Tensor | None = None,
        time_dim: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Returns the TD(0) target ``r + gamma * (1 - terminated) * V(s')`` (see the base class).

        With ``next_value`` given (a loss that valued the next states itself, e.g. with a
        target network), only the step signals are read: one step needs no time dim and
        no current value.
        """
        nxt = tensordict.get("next", None)
        if next_value is None or nxt is None:
            return super().value_estimate(tensordict, next_value=next_value, time_dim=time_dim, **kwargs)
        keys = self.tensor_keys
        reward = nxt.get(keys.reward, None)
        terminated = nxt.get(keys.terminated, None)
        if reward is None or terminated is None:
            reward = self._signal(tensordict, "reward")  # raises, naming the missing key
            terminated = self._signal(tensordict, "done")  # no 'terminated': 'done' stands for it
        if next_value.shape != reward.shape:
            self._check_value_shape(next_value, reward.shape)
        if self.average_rewards:
            reward = _standardize(reward)
        gamma = self._gamma(tensordict, reward)
        if self.differentiable or not next_value.requires_grad:
            return td0_return_estimate(gamma, next_value, reward, terminated)
        with torch.no_grad():
            return td0_return_estimate(gamma, next_value, reward, terminated)


class TDLambdaEstimator(ValueEstimatorBase):
    """TD(lambda) target, bootstrapped at truncations and at the end of the batch.

    Args:
        gamma: discount factor.
        lmbda: lambda.
        value_network: TensorDict module writing ``"state_value"``.
        average_rewards: standardize the rewards before computing the target.
        vectorized: accepted for TorchRL compatibility (always vectorized).
        **kwargs: as in :class:`ValueEstimatorBase`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"state_value": torch.zeros(1, 3, 1),
        ...     "next": {"state_value": torch.zeros(1, 3, 1), "reward": torch.ones(1, 3, 1),
        ...              "done": torch.zeros(1, 3, 1, dtype=torch.bool)}}, [1, 3])
        >>> TDLambdaEstimator(gamma=1.0, lmbda=0.5, value_network=None)(data)["value_target"].flatten()
        tensor([1.7500, 1.5000, 1.0000])
    """

    def __init__(
        self,
        *,
        gamma: float | Tensor,
        lmbda: float | Tensor,
        value_network: nn.Module | None,
        average_rewards: bool = False,
        vectorized: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(value_network=value_network, **kwargs)
        self.register_buffer("gamma", _as_buffer(gamma, self._device))
        self.register_buffer("lmbda", _as_buffer(lmbda, self._device))
        self.average_rewards = average_rewards

    def _estimate(self, value, next_value, reward, done, terminated, gamma, time_dim):
        if self.average_rewards:
            reward = _standardize(reward)
        target = td_lambda_return_estimate(
            gamma, self._lmbda(reward), next_value, reward, done, terminated, time_dim=time_dim
        )
        return target - value, target


class TD1Estimator(TDLambdaEstimator):
    """Monte-Carlo return bootstrapped at truncations: :class:`TDLambdaEstimator` with ``lmbda=1``.

    This is the "reward-to-go minus a baseline" of REINFORCE with a value baseline.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"state_value": torch.zeros(1, 3, 1),
        ...     "next": {"state_value": torch.zeros(1, 3, 1), "reward": torch.ones(1, 3, 1),
        ...              "done": torch.zeros(1, 3, 1, dtype=torch.bool)}}, [1, 3])
        >>> TD1Estimator(gamma=1.0, value_network=None)(data)["value_target"].flatten()
        tensor([3., 2., 1.])
    """

    def __init__(
        self,
        *,
        gamma: float | Tensor,
        value_network: nn.Module | None,
        average_rewards: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(gamma=gamma, lmbda=1.0, value_network=value_network, average_rewards=average_rewards, **kwargs)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma.item():.4g}, differentiable={self.differentiable}"


def _deprecated_name(old: str, new: type[ValueEstimatorBase]) -> type[ValueEstimatorBase]:
    """A subclass of ``new`` named ``old`` that warns, when built, to use ``new``."""

    def __init__(self: ValueEstimatorBase, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            f"{old} is the old name of {new.__name__} (TorchRL deprecated it too): use {new.__name__}, "
            "which takes the same arguments.",
            UserWarning,
            stacklevel=2,
        )
        new.__init__(self, *args, **kwargs)

    doc = f"""Deprecated name of :class:`{new.__name__}` (TorchRL's older name); warns when built.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     estimator = {old}(gamma=0.9, {"lmbda=0.9, " if new is TDLambdaEstimator else ""}value_network=None)
        >>> isinstance(estimator, {new.__name__}), "use {new.__name__}" in str(caught[0].message)
        (True, True)
    """
    return type(old, (new,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


TD0Estimate = _deprecated_name("TD0Estimate", TD0Estimator)
TD1Estimate = _deprecated_name("TD1Estimate", TD1Estimator)
TDLambdaEstimate = _deprecated_name("TDLambdaEstimate", TDLambdaEstimator)
