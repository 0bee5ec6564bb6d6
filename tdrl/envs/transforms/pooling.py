"""TimeMaxPool: the element-wise maximum of an entry over its last ``T`` values in the episode.

Attached to an env, the transform keeps the last ``T`` values of each entry inside
itself (one window per sub-env), restarted from zeros at each reset, so the first
``T - 1`` steps of an episode also pool the zeros of the empty slots (as TorchRL's
does). Called on a stored trajectory (time along the last batch dim), ``forward``
recomputes what stepping wrote, taking the first step and every step after a
``("next", "done")`` as an episode start.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=3), TimeMaxPool(T=2))
    >>> env.rollout(5, break_when_any_done=False)["next", "observation"].squeeze(-1)
    tensor([1., 2., 3., 1., 2.])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.step import _last_start, _trajectory_starts
from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import NestedKey

__all__ = ["TimeMaxPool"]


class TimeMaxPool(Transform):
    """Replace entries by their element-wise maximum over the last ``T`` steps of the episode.

    Args:
        in_keys: the entries to pool (default ``["observation"]``).
        out_keys: where to write the pooled values (default ``in_keys``).
        T: the window length (>= 1).
        reset_key: the entry flagging the sub-envs to reset in a partial reset
            (default ``"_reset"``).

    Raises:
        ValueError: when ``T`` < 1.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> obs = torch.tensor([[3.0], [1.0], [2.0], [0.5]])
        >>> td = TensorDict({"observation": obs, "next": {"observation": obs + 1,
        ...     "done": torch.tensor([[False], [True], [False], [False]])}}, [4])
        >>> TimeMaxPool(T=2)(td)["observation"].squeeze(-1)
        tensor([3., 3., 2., 2.])
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        T: int = 1,
        reset_key: NestedKey | None = None,
    ) -> None:
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"TimeMaxPool: T (the number of steps pooled) must be an int >= 1, got {T!r}.")
        super().__init__(["observation"] if in_keys is None else in_keys, out_keys)
        self.T = T
        self.reset_key = "_reset" if reset_key is None else reset_key
        self._windows: dict = {}  # in_key -> [T, *batch, *feature], the newest value first

    @property
    def buffer_size(self) -> int:
        """The window length ``T`` (TorchRL's attribute name)."""
        return self.T

    # stepping keeps the window inside the transform: mapping a whole rollout at once would leave it behind
    time_vectorizable = False

    def _window(self, key: NestedKey, value: torch.Tensor) -> torch.Tensor:
        window = self._windows.get(key)
        if window is None or window.shape[1:] != value.shape or window.dtype != value.dtype:
            window = torch.zeros((self.T, *value.shape), dtype=value.dtype, device=value.device)
            self._windows[key] = window
        return window

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        mask = tensordict.get(self.reset_key, None) if tensordict is not None else None
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict_reset.get(in_key, None)
            if value is None and tensordict is not None:
                value = tensordict.get(in_key, None)  # an entry the reset left out: carried from the last step
            if value is None:
                raise KeyError(
                    f"TimeMaxPool: {in_key!r} is neither in the reset output nor in the reset's input. "
                    "Fix: pass in_keys naming entries the env writes at reset."
                )
            window = self._window(in_key, value)
            if mask is None:
                window.zero_()
                window[0] = value
                tensordict_reset.set(out_key, window.amax(0))
                continue
            nb = mask.ndim - 1  # the flag is [*batch, 1]
            rows = mask.reshape(*mask.shape[:nb], *([1] * (value.ndim - nb)))
            window.copy_(torch.where(rows, torch.zeros_like(window), window))
            window[0] = torch.where(rows, value, window[0])
            tensordict_reset.set(out_key, window.amax(0))
        return tensordict_reset

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict.get(in_key, None)
            if value is None:
                continue
            window = self._window(in_key, value)
            window.copy_(window.roll(1, 0))
            window[0] = value
            tensordict.set(out_key, window.amax(0))
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Pool a trajectory (time along the last batch dim) at the root and under ``"next"``."""
        starts, tdim = _trajectory_starts(tensordict, "TimeMaxPool")
        last, t = _last_start(starts, tdim)
        offsets = torch.arange(1 - self.T, 1, device=starts.device)
        index = t.unsqueeze(-1) + offsets  # [*B, time, T]: the time index of each pooled value
        valid = index >= last.unsqueeze(-1)
        index = torch.maximum(index, last.unsqueeze(-1))
        nxt = tensordict.get("next", None)
        results = []
        for in_key in self.in_keys:
            values = tensordict.get(in_key)
            feat = values.shape[tensordict.batch_dims :]
            flat = index.reshape(*index.shape[:tdim], -1)
            gather_index = flat.view(*flat.shape, *([1] * len(feat))).expand(*flat.shape, *feat)
            window = torch.gather(values, tdim, gather_index).view(*index.shape, *feat)
            window = torch.where(valid.view(*valid.shape, *([1] * len(feat))), window, torch.zeros_like(window))
            root = window.amax(tdim + 1)
            after = None
            if nxt is not None and nxt.get(in_key, None) is not None:
                following = nxt.get(in_key).unsqueeze(tdim + 1)
                after = torch.cat([window.narrow(tdim + 1, 1, self.T - 1), following], tdim + 1).amax(tdim + 1)
            results.append((root, after))
        for out_key, (root, after) in zip(self.out_keys, results):
            tensordict.set(out_key, root)
            if after is not None:
                nxt.set(out_key, after)
        return tensordict

    def _extra_repr(self) -> str:
        return f"T={self.T}"
