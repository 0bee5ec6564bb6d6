"""Discrete action maps: DiscreteActionProjection and ActionDiscretizer.

- ``DiscreteActionProjection``: a policy with ``max_actions`` one-hot outputs drives an env
  with fewer (``num_actions_effective``); an out-of-range choice becomes a random legal one.
- ``ActionDiscretizer``: a discrete policy (DQN) drives an env with a continuous, bounded
  action box, each action dimension cut into ``num_intervals`` values.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import ContinuousActionMock
    >>> env = TransformedEnv(ContinuousActionMock(), ActionDiscretizer(3))
    >>> type(env.action_spec).__name__, env.action_spec.nvec.tolist()
    ('MultiCategorical', [3, 3])
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _as_key_list, _slot
from tdrl.specs import Bounded, Categorical, Composite, MultiCategorical, MultiOneHot, NestedKey, OneHot, TensorSpec

__all__ = ["DiscreteActionProjection", "ActionDiscretizer"]


class DiscreteActionProjection(Transform):
    """Maps one-hot actions over ``max_actions`` values to the base env's ``num_actions_effective``.

    The policy sees a ``OneHot(max_actions)`` action spec. On the way to the base env, a
    choice below ``num_actions_effective`` is kept and any other is replaced by a uniform
    draw among the legal ones; the base env receives a one-hot ``int64`` vector of
    length ``num_actions_effective`` (``int64`` as in TorchRL; the base action's dtype once
    attached to an env). Used to drive several discrete
    envs with different action counts by one policy. Called on a plain tensordict (a
    replay buffer, a module chain) with ``include_forward=True``, it re-encodes the
    action found at the root and under ``"next"`` as a one-hot over ``max_actions``.

    Args:
        num_actions_effective: the number of actions of the base env.
        max_actions: the number of actions the policy chooses among (``>= num_actions_effective``).
        action_key: the action entry (default ``"action"``).
        include_forward: re-encode the action when called on a tensordict (default True).

    Raises:
        ValueError: when ``max_actions < num_actions_effective``; (at attach time) when the base
            action is not a one-hot of ``num_actions_effective`` values; on ``inv`` when the
            action's last dim is not ``max_actions``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> t = DiscreteActionProjection(num_actions_effective=2, max_actions=3)
        >>> t.inv(TensorDict(action=torch.tensor([0, 1, 0])))["action"]
        tensor([0, 1])
        >>> _ = torch.manual_seed(0)
        >>> t.inv(TensorDict(action=torch.tensor([0, 0, 1])))["action"]  # out of range: a random legal one
        tensor([1, 0])
    """

    def __init__(
        self,
        num_actions_effective: int,
        max_actions: int,
        action_key: NestedKey = "action",
        include_forward: bool = True,
    ) -> None:
        key = _as_key_list(action_key)
        super().__init__(key if include_forward else [], None, key, None)
        if int(max_actions) < int(num_actions_effective) or int(num_actions_effective) < 1:
            raise ValueError(
                f"DiscreteActionProjection: max_actions ({max_actions}) must be >= num_actions_effective "
                f"({num_actions_effective}) >= 1. Fix: pass the base env's action count as num_actions_effective."
            )
        self.num_actions_effective = int(num_actions_effective)
        self.max_actions = int(max_actions)
        self.include_forward = include_forward
        self._base_dtype: torch.dtype | None = None  # the base env's action dtype, once attached

    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        forward_keys = self.in_keys
        self.in_keys = []  # the forward keys name the action, which the env reads rather than writes
        try:
            super()._check_spec_keys(output_spec, input_spec)
        finally:
            self.in_keys = forward_keys

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict  # in an env, the policy's action stays as written; only the base env's is mapped

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Re-encode the action (root and ``"next"``) as a one-hot over ``max_actions``."""
        for part in (tensordict, tensordict.get("next", None)):
            if part is None:
                continue
            for key in self.in_keys:
                value = part.get(key, None)
                if value is not None:
                    part.set(key, torch.nn.functional.one_hot(value.long().argmax(-1), self.max_actions))
        return tensordict

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        if value.shape[-1] != self.max_actions:
            raise ValueError(
                f"DiscreteActionProjection: the action {self.in_keys_inv[0]!r} has last dim {value.shape[-1]}; "
                f"expected max_actions={self.max_actions} (a one-hot over the policy's actions)."
            )
        index = value.long().argmax(-1)
        outside = index >= self.num_actions_effective
        if outside.any():
            index = index.masked_scatter(
                outside, torch.randint(self.num_actions_effective, (int(outside.sum()),), device=index.device)
            )
        out = torch.nn.functional.one_hot(index, self.num_actions_effective)
        return out if self._base_dtype is None else out.to(self._base_dtype)

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if not isinstance(spec, OneHot) or spec.n != self.num_actions_effective:
            raise ValueError(
                f"DiscreteActionProjection: the base env's action {key!r} must be OneHot({self.num_actions_effective}) "
                f"(num_actions_effective), got {spec}. Fix: pass the base env's action count, or use a one-hot env."
            )
        self._base_dtype = spec.dtype
        return OneHot(
            self.max_actions, shape=(*spec.shape[:-1], self.max_actions), device=spec.device, dtype=spec.dtype
        )

    def _extra_repr(self) -> str:
        return f"num_actions_effective={self.num_actions_effective}, max_actions={self.max_actions}"


class ActionDiscretizer(Transform):
    """A discrete action for a continuous, bounded base action: each dimension cut into ``num_intervals``.

    Dimension ``i`` of the base box ``[low_i, high_i]`` is cut into ``n_i`` equal intervals;
    discrete value ``k`` maps to a point of interval ``k`` chosen by ``sampling``: its
    middle (``MEDIAN``, the default), its lower end (``LOW``), its upper end (``HIGH``) or
    a uniform draw inside it (``RANDOM``). The policy's action spec becomes
    ``MultiCategorical(nvec)`` (``MultiOneHot`` with ``categorical=False``; ``Categorical`` /
    ``OneHot`` for a scalar base action).

    With ``out_action_key`` different from ``action_key``, the policy writes the discrete
    action under ``out_action_key``, the continuous one moves to the state spec, and each
    step records the continuous action that was sent under ``action_key`` at the root.

    Args:
        num_intervals: the number of values per dimension: an int for all, or a 1-d tensor
            with one count per action dimension.
        action_key: the base env's continuous action (default ``"action"``).
        out_action_key: where the policy writes the discrete action (default ``action_key``).
        sampling: an ``ActionDiscretizer.SamplingStrategy`` (default ``MEDIAN``).
        categorical: indices (True, the default) or one-hot vectors (False).

    Raises:
        ValueError: (at attach time) when the base action is not a finite ``Bounded`` box, or
            ``num_intervals`` does not give one positive count per dimension.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.envs.libs.gym import GymEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), ActionDiscretizer(5))  # torque in [-2, 2]
        >>> env.transform.intervals
        tensor([[-1.6000, -0.8000,  0.0000,  0.8000,  1.6000]])
        >>> env.transform.inv(TensorDict(action=torch.tensor([4])))["action"]
        tensor([1.6000])
    """

    class SamplingStrategy(IntEnum):
        """Which point of its interval a discrete value maps to."""

        MEDIAN = 0
        LOW = 1
        HIGH = 2
        RANDOM = 3

    def __init__(
        self,
        num_intervals: int | torch.Tensor,
        action_key: NestedKey = "action",
        out_action_key: NestedKey | None = None,
        sampling: ActionDiscretizer.SamplingStrategy | int | None = None,
        categorical: bool = True,
    ) -> None:
        super().__init__(None, None, action_key, action_key if out_action_key is None else out_action_key)
        self.action_key = self.in_keys_inv[0]
        self.out_action_key = self.out_keys_inv[0]
        self.num_intervals = num_intervals
        self.sampling = self.SamplingStrategy(self.SamplingStrategy.MEDIAN if sampling is None else sampling)
        self.categorical = categorical
        self.dtype = torch.get_default_dtype()
        self.intervals: torch.Tensor | list | None = None
        self.nvec: torch.Tensor | None = None
        self._table: torch.Tensor | None = None  # [n_act, max(n)] the values, padded with each row's last
        self._jitters: torch.Tensor | None = None
        self._scalar = False
        self._batch_dims = 0
        self._continuous: TensorSpec | None = None  # the base spec, kept in the state spec when keys differ
        self._sent: torch.Tensor | None = None  # the last continuous action sent, recorded at the root

    def custom_arange(self, nint: int, device: Any) -> torch.Tensor:
        """Where in its interval each of ``nint`` values sits, as fractions of the box in ``[0, 1]``.

        Override it for another placement (e.g. log-spaced values).

        Args:
            nint: the number of values of one dimension.
            device: the device of the result.

        Returns:
            a tensor of shape ``[nint]`` in the base action's dtype.
        """
        k = torch.arange(nint, dtype=self.dtype, device=device)
        if self.sampling == self.SamplingStrategy.MEDIAN:
            return (k + 0.5) / nint
        if self.sampling == self.SamplingStrategy.HIGH:
            return (k + 1) / nint
        return k / nint  # LOW, and RANDOM before its jitter

    # --- specs -----------------------------------------------------------------------------
    def transform_input_spec(self, input_spec: Composite) -> Composite:
        self._batch_dims = len(input_spec.shape)
        actions = _slot(input_spec, "full_action_spec")
        self._continuous = cast(TensorSpec, actions[self.action_key]) if self.action_key in actions else None
        input_spec = super().transform_input_spec(input_spec)
        if self._continuous is not None and self.out_action_key != self.action_key:
            _slot(input_spec, "full_state_spec")[self.action_key] = self._continuous.clone()
        return input_spec

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if not isinstance(spec, Bounded) or not (torch.isfinite(spec.low).all() and torch.isfinite(spec.high).all()):
            raise ValueError(
                f"ActionDiscretizer: the base env's action {key!r} must be a finite Bounded box, got {spec}. "
                f"Fix: bound the action (e.g. ClipTransform) before discretizing it."
            )
        batch = tuple(spec.shape[: self._batch_dims])
        unbatched = tuple(spec.shape[self._batch_dims :])
        if len(unbatched) > 1:
            raise ValueError(
                f"ActionDiscretizer: the base action {key!r} has per-env shape {unbatched}; one dim (or a scalar) "
                f"is supported. Fix: flatten the action first."
            )
        self._scalar = not unbatched
        n_act = 1 if self._scalar else unbatched[0]
        low = spec.low.reshape(-1, n_act)[0]
        high = spec.high.reshape(-1, n_act)[0]
        counts = torch.as_tensor(self.num_intervals, dtype=torch.int64).flatten()
        if counts.numel() == 1:
            counts = counts.expand(n_act)
        if counts.numel() != n_act or (counts < 1).any():
            raise ValueError(
                f"ActionDiscretizer: num_intervals {torch.as_tensor(self.num_intervals).tolist()} must be one positive "
                f"int, or one per action dimension ({n_act} for {key!r})."
            )
        self.dtype = spec.dtype
        rows = [lo + self.custom_arange(int(n), spec.device) * (hi - lo) for lo, hi, n in zip(low, high, counts)]
        width = int(counts.max())
        self._table = torch.stack([torch.cat([r, r[-1:].expand(width - r.numel())]) for r in rows])
        self.intervals = self._table if bool((counts == width).all()) else rows
        self._jitters = (high - low) / counts.to(spec.dtype)
        self.nvec = counts.clone() if not self._scalar else counts[0].clone()
        nvec = [int(n) for n in counts]
        if self._scalar:
            cls = Categorical if self.categorical else OneHot
            shape = batch if self.categorical else (*batch, nvec[0])
            return cls(nvec[0], shape=shape, device=spec.device)
        if self.categorical:
            return MultiCategorical(counts.expand(*batch, n_act), shape=(*batch, n_act), device=spec.device)
        return MultiOneHot(nvec, shape=(*batch, sum(nvec)), device=spec.device)

    # --- the action map ------------------------------------------------------------------------
    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(self.out_action_key, None)
        if action is None:
            return tensordict
        if self._table is None:
            raise RuntimeError(
                "ActionDiscretizer: the values are set from the base env's action bounds when the transform is "
                "attached to an env. Fix: use it inside TransformedEnv(env, ActionDiscretizer(...))."
            )
        continuous = self._to_continuous(action)
        tensordict.set(self.action_key, continuous)
        self._sent = continuous
        return tensordict

    def _to_continuous(self, action: torch.Tensor) -> torch.Tensor:
        table = cast(torch.Tensor, self._table)
        if self.categorical:
            index = action.long().unsqueeze(-1) if self._scalar else action.long()
        else:
            sizes = [int(n) for n in cast(torch.Tensor, self.nvec).reshape(-1)]
            index = torch.stack([part.long().argmax(-1) for part in action.split(sizes, -1)], -1)
        rows = table.to(action.device).expand(*index.shape, table.shape[-1])
        value = rows.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        if self.sampling == self.SamplingStrategy.RANDOM:
            value = value + cast(torch.Tensor, self._jitters).to(value.device) * torch.rand_like(value)
        return value.squeeze(-1) if self._scalar else value

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.out_action_key != self.action_key and self._sent is not None:
            tensordict.set(self.action_key, self._sent)  # the continuous action that was sent (a state entry)
            self._sent = None
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict  # an action map only

    def __repr__(self) -> str:
        return (
            f"ActionDiscretizer(num_intervals={self.num_intervals}, action_key={self.action_key}, "
            f"out_action_key={self.out_action_key}, sampling={int(self.sampling)}, categorical={self.categorical})"
        )
