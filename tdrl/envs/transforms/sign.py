"""Transforms that keep only the sign of values: SignTransform and BinarizeReward.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"reward": torch.tensor([[-2.0], [0.0], [0.5]])}, [3])
    >>> SignTransform(in_keys=["reward"])(td.clone())["reward"].squeeze(-1)
    tensor([-1.,  0.,  1.])
    >>> BinarizeReward()(td.clone())["reward"].squeeze(-1)
    tensor([0, 0, 1], dtype=torch.int8)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Binary, Bounded, NestedKey, TensorSpec

__all__ = ["SignTransform", "BinarizeReward"]


class SignTransform(Transform):
    """Replace entries by their sign (-1, 0 or 1, same dtype); on the inverse path, actions too.

    Observations and rewards it maps get a ``Bounded(-1, 1)`` spec of their dtype (``[0, 1]``
    for unsigned dtypes); the action spec is left as it is (the policy still writes actions of
    the base env's domain, of which only the sign reaches the base env).

    Args:
        in_keys: the entries to map.
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: the base env's inputs, written as the sign of what the policy wrote.
        out_keys_inv: the entries the policy writes (default ``in_keys_inv``).

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing.transform_contract import TransformTestEnv
        >>> env = TransformedEnv(TransformTestEnv(), SignTransform(in_keys=["observation", "reward"]))
        >>> ro = env.rollout(4)
        >>> bool(ro["next", "observation"].abs().le(1).all()), env.reward_spec.space.low.item()
        (True, -1.0)
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.sign()

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.sign()

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        unsigned = spec.dtype == torch.bool or (not spec.dtype.is_floating_point and not spec.dtype.is_signed)
        return Bounded(0 if unsigned else -1, 1, shape=spec.shape, device=spec.device, dtype=spec.dtype)


class BinarizeReward(Transform):
    """Map rewards to 1 where they are positive and 0 elsewhere (``torch.int8``, spec ``Binary(n=1)``).

    Args:
        in_keys: the rewards (default ``["reward"]``); each must end with a dim of size 1.
        out_keys: where to write them (default ``in_keys``).

    Raises:
        ValueError: when an entry's last dim is not of size 1 (when attached, or when called).

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), BinarizeReward())
        >>> env.reward_spec.dtype, env.rollout(2)["next", "reward"].squeeze(-1)
        (torch.int8, tensor([1, 1], dtype=torch.int8))
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(["reward"] if in_keys is None else in_keys, out_keys)

    @staticmethod
    def _check_last_dim(shape: torch.Size, key: NestedKey | None) -> None:
        if not shape or shape[-1] != 1:
            where = f" {key!r}" if key is not None else ""
            raise ValueError(
                f"BinarizeReward: the reward{where} must end with a dim of size 1, got shape {tuple(shape)}. "
                "Fix: unsqueeze it (UnsqueezeTransform(-1, ...)) or pass in_keys naming rewards of shape [..., 1]."
            )

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        self._check_last_dim(value.shape, None)
        return (value > 0).to(torch.int8)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        self._check_last_dim(spec.shape, key)
        return Binary(n=1, shape=spec.shape, device=spec.device)
