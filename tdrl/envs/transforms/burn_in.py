"""BurnInTransform: refresh the recurrent state of sampled sequences by running the first steps.

A replay buffer stores the recurrent state a policy had when the data was collected; by
the time a sequence is sampled the network has changed and that state is stale. The
transform runs the recurrent modules over the first ``burn_in`` steps of each sampled
sequence (without gradients), drops those steps, and writes the state they end with as
the initial state of the rest (R2D2's burn-in).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.modules import GRUModule
    >>> gru = GRUModule(input_size=3, hidden_size=4, in_keys=["observation", "hidden"],
    ...                 out_keys=["features", ("next", "hidden")], default_recurrent_mode=True)
    >>> t = BurnInTransform(modules=[gru], burn_in=2)
    >>> t.out_keys
    ['hidden']
    >>> td = TensorDict({"observation": torch.randn(5, 6, 3), "hidden": torch.zeros(5, 6, 1, 4),
    ...                  "is_init": torch.zeros(5, 6, 1, dtype=torch.bool)}, [5, 6])
    >>> t(td).batch_size
    torch.Size([5, 4])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from tdrl.envs.transforms.transforms import Transform, _key_tuple, _unravel
from tdrl.specs import Composite, NestedKey

__all__ = ["BurnInTransform"]

_NOT_IN_ENV = (
    "BurnInTransform works on sampled sequences, not on env steps. Fix: append it to a replay buffer "
    "(buffer.append_transform(t), or ReplayBuffer(..., transform=t))."
)


class BurnInTransform(Transform):
    """Runs ``modules`` over the first ``burn_in`` steps of each sequence and starts the rest from their state.

    The input is a tensordict ``[B, T, ...]`` with time as dim 1. The modules run on
    ``[:, :burn_in]`` without gradients (each on its own device); the output is
    ``[:, burn_in:]``, whose first step holds, for each ``out_key``, what the modules wrote
    under ``("next", out_key)`` at the last burnt-in step. The input is not modified.

    Args:
        modules: the recurrent modules (``LSTMModule``, ``GRUModule`` or any
            ``TensorDictModuleBase`` that runs sequences), applied in order.
        burn_in: the number of steps to burn in (0 returns the input unchanged).
        out_keys: the states to refresh (default: every ``("next", key)`` the modules write,
            as ``key``). A leading ``"next"`` is dropped with a warning.

    Raises:
        ValueError: when a module is not a ``TensorDictModuleBase``, ``burn_in`` is negative,
            or (on call) the data has fewer than ``burn_in + 1`` steps; when attached to an env.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from tdrl.modules import LSTMModule
        >>> lstm = LSTMModule(input_size=2, hidden_size=3, in_keys=["obs", "h", "c"],
        ...                   out_keys=["y", ("next", "h"), ("next", "c")], default_recurrent_mode=True)
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), batch_size=2)
        >>> _ = rb.append_transform(BurnInTransform([lstm], burn_in=3))
        >>> data = TensorDict({"obs": torch.randn(4, 8, 2), "h": torch.zeros(4, 8, 1, 3), "c": torch.zeros(4, 8, 1, 3),
        ...                    "is_init": torch.zeros(4, 8, 1, dtype=torch.bool)}, [4, 8])
        >>> _ = rb.extend(data)
        >>> sample = rb.sample()
        >>> sample.batch_size, bool(sample["h"][:, 0].abs().sum() > 0)
        (torch.Size([2, 5]), True)
    """

    time_vectorizable = False

    def __init__(
        self,
        modules: Sequence[TensorDictModuleBase] | TensorDictModuleBase,
        burn_in: int,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        if not isinstance(modules, Sequence):
            modules = [modules]
        for module in modules:
            if not isinstance(module, TensorDictModuleBase):
                raise ValueError(
                    f"BurnInTransform: modules must be TensorDictModules (e.g. LSTMModule, GRUModule); got "
                    f"{type(module).__name__}."
                )
        if int(burn_in) < 0:
            raise ValueError(f"BurnInTransform: burn_in must be >= 0, got {burn_in}.")
        in_keys: list = []
        for module in modules:
            in_keys.extend(_unravel(k) for k in module.in_keys if _unravel(k) not in in_keys)
        if out_keys is None:
            keys: list = []
            for module in modules:
                for key in module.out_keys:
                    parts = _key_tuple(_unravel(key))
                    if parts[0] == "next" and len(parts) > 1 and _unravel(parts[1:]) not in keys:
                        keys.append(_unravel(parts[1:]))
        else:
            keys = []
            for key in out_keys:
                parts = _key_tuple(_unravel(key))
                if parts[0] == "next" and len(parts) > 1:
                    warnings.warn(
                        f"BurnInTransform: out_key {key!r} names the next step; the burnt-in state is always read "
                        f"from 'next', so it is used as {_unravel(parts[1:])!r}.",
                        stacklevel=2,
                    )
                    parts = parts[1:]
                if _unravel(parts) not in keys:
                    keys.append(_unravel(parts))
        super().__init__(in_keys, in_keys)
        self.out_keys = keys
        # a plain list, as in TorchRL (not submodules: the transform's state_dict does not hold the policy's
        # weights); it shadows nn.Module.modules(), which TorchRL's transform does too
        self.modules = list(modules)  # type: ignore[method-assign,assignment]
        self.burn_in = int(burn_in)

    def _check_key_lengths(self) -> None:
        return None  # the states written are not one per key read

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        raise ValueError(_NOT_IN_ENV)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_NOT_IN_ENV)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_NOT_IN_ENV)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Burn in the first ``burn_in`` steps and return the rest (see the class docstring)."""
        if self.burn_in == 0:
            return tensordict
        if tensordict.batch_dims < 2 or tensordict.batch_size[1] <= self.burn_in:
            raise ValueError(
                f"BurnInTransform: the data must be [B, T, ...] with T > burn_in={self.burn_in} (time as dim 1); "
                f"got batch_size {tuple(tensordict.batch_size)}. Fix: sample sequences longer than burn_in "
                f"(e.g. a SliceSampler with slice_len > burn_in, reshaped to [B, T])."
            )
        device = tensordict.device
        burnt = tensordict[:, : self.burn_in]
        rest = tensordict[:, self.burn_in :]
        with torch.no_grad():
            for module in cast("list[TensorDictModuleBase]", self.modules):
                target = _device_of(module, burnt.device)
                burnt = module(burnt.to(target) if target is not None else burnt)
        burnt = burnt.to(device) if device is not None else burnt
        last_next = burnt.get("next")[:, -1]
        rest = rest.clone(False)  # new tensordict (shallow): the input's entries stay untouched
        for key in self.out_keys:
            state = last_next.get(key)
            current = rest.get(key, None)
            if current is None:
                current = state.new_zeros(*rest.batch_size, *state.shape[1:])
            else:
                current = current.clone()
            current[:, 0] = state
            rest.set(key, current)
        return rest

    def __repr__(self) -> str:
        return f"BurnInTransform(burn_in={self.burn_in}, in_keys={self.in_keys}, out_keys={self.out_keys})"


def _device_of(module: Any, default: torch.device | None) -> torch.device | None:
    """The device of a module's first parameter (``default`` for a module without parameters)."""
    for param in module.parameters():
        return param.device
    return default
