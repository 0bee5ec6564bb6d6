"""FiniteTensorDictCheck: refuse data holding NaN or infinite values, naming the entry.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> FiniteTensorDictCheck()(TensorDict({"observation": torch.ones(2)}, []))["observation"]
    tensor([1., 1.])
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform

__all__ = ["FiniteTensorDictCheck"]

_NOT_FINITE = (
    "FiniteTensorDictCheck: {key!r} holds {n} non-finite value(s) (NaN or inf) out of {total}, e.g. {example}. "
    "Fix: find where the env or a transform produces it (clip, normalize with an epsilon), or drop this check."
)


def _check_finite(tensordict: TensorDictBase, prefix: tuple = ()) -> None:
    for key, value in tensordict.items(True, True):
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                full = (*prefix, *(key if isinstance(key, tuple) else (key,)))
                raise ValueError(
                    _NOT_FINITE.format(
                        key=full[0] if len(full) == 1 else full,
                        n=int(bad.sum()),
                        total=value.numel(),
                        example=value[bad].flatten()[0].item(),
                    )
                )


class FiniteTensorDictCheck(Transform):
    """Raise when any floating entry of the env's output (or of a TensorDict it is called on) is not finite.

    Each reset and step output is checked, every entry of it (integer and bool entries
    cannot hold NaN and are skipped); called on a TensorDict, the whole TensorDict is.
    The data passes through unchanged.

    Raises:
        ValueError: naming the first entry holding a NaN or an infinite value.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), FiniteTensorDictCheck())
        >>> env.rollout(2)["next", "observation"].squeeze(-1)
        tensor([1., 2.])
        >>> import torch
        >>> from tensordict import TensorDict
        >>> FiniteTensorDictCheck()(TensorDict({"next": {"reward": torch.tensor([1.0, float("nan")])}}, []))
        Traceback (most recent call last):
        ...
        ValueError: FiniteTensorDictCheck: ('next', 'reward') holds 1 non-finite value(s) (NaN or inf) out of 2, ...
    """

    def __init__(self) -> None:
        super().__init__(in_keys=[])

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        _check_finite(tensordict)
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict)

    def _rewritten_keys(self) -> set:
        return set()

    def __repr__(self) -> str:
        return "FiniteTensorDictCheck()"
