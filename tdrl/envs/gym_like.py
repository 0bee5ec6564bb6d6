"""default_info_dict_reader: which entries of a gymnasium ``info`` dict an env writes (TorchRL's reader).

Hand one to :meth:`~tdrl.envs.GymWrapper.set_info_dict_reader`; the wrapper then copies
those ``info`` entries into each reset and step output and declares their specs.

Examples:
    >>> import numpy as np
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.envs import default_info_dict_reader
    >>> reader = default_info_dict_reader(["x_position"])
    >>> out = reader({"x_position": np.float64(0.5), "other": 1}, TensorDict())
    >>> out["x_position"], reader.info_spec["x_position"].dtype
    (tensor(0.5000, dtype=torch.float64), torch.float64)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl.specs import Composite, TensorSpec, Unbounded

__all__ = ["default_info_dict_reader"]


class default_info_dict_reader:
    """Copies entries of an env's ``info`` dict into a TensorDict, and describes them.

    Args:
        keys: the ``info`` entries to read; ``None``: every entry found in the first
            ``info`` read (those starting with ``_`` left out when ``ignore_private``).
        spec: the entries' specs: a sequence (one per key), a dict or a ``Composite``;
            ``None``: ``Unbounded`` specs read off the first values.
        ignore_private: leave out entries whose name starts with ``_`` (vector envs' masks).

    Raises:
        ValueError: when a sequence of specs does not match ``keys`` in length.
        KeyError: on a call, when a key is neither in the ``info`` dict nor in ``spec``.
    """

    def __init__(
        self,
        keys: Sequence[str] | None = None,
        spec: Sequence[TensorSpec] | Mapping[str, TensorSpec] | Composite | None = None,
        ignore_private: bool = True,
    ) -> None:
        self.ignore_private = ignore_private
        self.keys: list[str] | None = None if keys is None else list(keys)
        info_spec: Composite | None = None
        if isinstance(spec, Composite):
            info_spec = spec.clone()
        elif isinstance(spec, Mapping):
            info_spec = Composite(dict(spec))
        elif spec is not None:
            specs = list(spec)
            if self.keys is None or len(specs) != len(self.keys):
                raise ValueError(
                    f"default_info_dict_reader: {len(specs)} specs for keys {self.keys}; a sequence of specs needs "
                    "one spec per key. Fix: pass keys=[...] of the same length, or a dict {key: spec}."
                )
            info_spec = Composite(dict(zip(self.keys, specs)))
        self._info_spec = info_spec

    @property
    def info_spec(self) -> Composite | None:
        """The specs of the entries read (``None`` until known)."""
        return self._info_spec

    def select_keys(self, info_dict: Mapping[str, Any]) -> list[str]:
        """The keys this reader takes from ``info_dict`` (fixed at the first call when ``keys`` is None)."""
        if self.keys is None:
            self.keys = [k for k in info_dict if not (self.ignore_private and k.startswith("_"))]
        return self.keys

    def __call__(self, info_dict: Mapping[str, Any], tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.select_keys(info_dict)
        learned = Composite() if self._info_spec is None else None
        for key in keys:
            if key in info_dict:
                value = info_dict[key]
                array = (
                    np.stack(list(value)) if isinstance(value, np.ndarray) and value.dtype == np.dtype("O") else value
                )
                tensor = torch.as_tensor(np.asarray(array))
                tensordict.set(key, tensor)
                if learned is not None:
                    learned[key] = Unbounded(shape=tensor.shape, dtype=tensor.dtype)
            elif self._info_spec is not None and key in self._info_spec.keys():
                tensordict.set(key, self._info_spec[key].zero())
            else:
                raise KeyError(
                    f"default_info_dict_reader: {key!r} is not in the info dict (keys {sorted(info_dict)}) and has no "
                    "spec to fill it with zeros. Fix: pass keys the env writes, or a spec for it."
                )
        if learned is not None:
            self._info_spec = learned
        return tensordict

    def reset(self) -> None:
        """Forget the keys and specs learned from data."""
        self.keys = None
        self._info_spec = None
