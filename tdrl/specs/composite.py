"""``Composite``: specs nested under string keys, the spec of a whole TensorDict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, cast, overload

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.specs.base import DeviceLike, NestedKey, ShapeLike, TensorSpec, _as_shape, _check_expand, _expand_args

__all__ = ["Composite"]

_T = TypeVar("_T")


def _split_key(key: NestedKey) -> tuple:
    if isinstance(key, str):
        return (key,)
    if isinstance(key, tuple) and key and all(isinstance(k, str) for k in key):
        return key
    raise TypeError(f"a spec key is a string or a tuple of strings, got {key!r}")


class Composite:
    """Specs nested under string keys: the spec of a whole TensorDict.

    ``shape`` is the batch shape every entry starts with. Nested entries are reached
    with tuple keys, as in a TensorDict: ``spec["next", "reward"]``.

    Args:
        specs: a mapping from key to spec (or ``None`` is not allowed: leave the key out).
        shape: the batch shape shared by every entry (``batch_size`` is accepted too).
        device: where the tensors live.
        **kwargs: more entries, as ``key=spec``.

    Raises:
        ValueError: when an entry's shape does not start with ``shape``.

    Examples:
        >>> from tdrl.specs import Unbounded
        >>> spec = Composite(observation=Unbounded(shape=(4, 3)), shape=(4,))
        >>> spec.rand().batch_size
        torch.Size([4])
        >>> spec["observation"] = Unbounded(shape=(5, 3))
        Traceback (most recent call last):
        ...
        ValueError: Composite: entry 'observation' has shape (5, 3), which does not start with ...
    """

    def __init__(
        self,
        specs: dict | None = None,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        batch_size: ShapeLike | None = None,
        **kwargs: Any,
    ) -> None:
        self.shape = _as_shape(shape if shape is not None else batch_size)
        self._device = None if device is None else torch.device(device)
        self._specs: dict[str, TensorSpec | Composite] = {}
        for key, value in {**(specs or {}), **kwargs}.items():
            if value is not None:
                self[key] = value

    # --- mapping ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if self._device is not None:
            return self._device
        for spec in self._specs.values():
            return spec.device
        return torch.device("cpu")

    @property
    def batch_size(self) -> torch.Size:
        return self.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: NestedKey) -> TensorSpec | Composite:
        parts = _split_key(key)
        node: Any = self
        for i, part in enumerate(parts):
            if not isinstance(node, Composite) or part not in node._specs:
                where = ".".join(parts[:i]) or "<root>"
                have = list(node._specs) if isinstance(node, Composite) else []
                raise KeyError(f"spec key {key!r} not found: {part!r} is not under {where}, which has keys {have}")
            node = node._specs[part]
        return node

    def __setitem__(self, key: NestedKey, value: TensorSpec | Composite) -> None:
        parts = _split_key(key)
        if len(parts) > 1:
            head = parts[0]
            if head not in self._specs:
                self._specs[head] = Composite(shape=self.shape, device=self._device)
            sub = self._specs[head]
            if not isinstance(sub, Composite):
                raise KeyError(f"cannot set {key!r}: {head!r} is a leaf spec, not a Composite")
            sub[parts[1:]] = value
            return
        if not isinstance(value, (TensorSpec, Composite)):
            raise TypeError(f"Composite entry {parts[0]!r} must be a spec, got {type(value).__name__}")
        if value.shape[: len(self.shape)] != self.shape:
            raise ValueError(
                f"Composite: entry {parts[0]!r} has shape {tuple(value.shape)}, which does not start "
                f"with the composite's batch shape {tuple(self.shape)}. Give the entry shape "
                f"{tuple(self.shape)} + its own dims (e.g. spec.expand(...))."
            )
        self._specs[parts[0]] = value

    def __delitem__(self, key: NestedKey) -> None:
        parts = _split_key(key)
        parent = cast(Composite, self[parts[:-1]]) if len(parts) > 1 else self
        if parts[-1] not in parent._specs:
            raise KeyError(f"spec key {key!r} not found; keys are {list(parent._specs)}")
        del parent._specs[parts[-1]]

    def __contains__(self, key: NestedKey) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    @overload
    def get(self, key: NestedKey) -> TensorSpec | Composite | None: ...

    @overload
    def get(self, key: NestedKey, default: _T) -> TensorSpec | Composite | _T: ...

    def get(self, key: NestedKey, default: Any = None) -> Any:
        if key not in self:
            return default
        return self[key]

    def set(self, key: NestedKey, value: TensorSpec | Composite) -> Composite:
        self[key] = value
        return self

    def pop(self, key: NestedKey, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(f"spec key {key!r} not found; keys are {list(self._specs)}")
        out = self[key]
        del self[key]
        return out

    def update(self, other: Composite | dict) -> Composite:
        items = other._specs.items() if isinstance(other, Composite) else other.items()
        for key, value in items:
            if isinstance(value, Composite) and isinstance(mine := self._specs.get(key), Composite):
                mine.update(value)
            else:
                self[key] = value
        return self

    def keys(self, include_nested: bool = False, leaves_only: bool = False) -> list[NestedKey]:
        """The keys, as strings at the top level and tuples for nested entries."""
        out: list[NestedKey] = []
        for key, spec in self._specs.items():
            is_comp = isinstance(spec, Composite)
            if not (leaves_only and is_comp):
                out.append(key)
            if include_nested and isinstance(spec, Composite):
                out.extend((key, *_split_key(sub)) for sub in spec.keys(True, leaves_only))
        return out

    def items(self, include_nested: bool = False, leaves_only: bool = False) -> list:
        return [(k, self[k]) for k in self.keys(include_nested, leaves_only)]

    def values(self, include_nested: bool = False, leaves_only: bool = False) -> list:
        return [self[k] for k in self.keys(include_nested, leaves_only)]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def is_empty(self) -> bool:
        return not any(True for _ in self.keys(True, True))

    # --- values ----------------------------------------------------------------------
    def _build(self, fn_name: str, shape: ShapeLike | None) -> TensorDict:
        lead = _as_shape(shape)
        data = {key: getattr(spec, fn_name)(lead) for key, spec in self._specs.items()}
        return TensorDict(data, batch_size=(*lead, *self.shape), device=self._device)

    def rand(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("rand", shape)

    def zero(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("zero", shape)

    def zeros(self, shape: ShapeLike | None = None) -> TensorDict:
        return self.zero(shape)

    def one(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("one", shape)

    def mismatch(self, value: Any) -> str | None:
        if not isinstance(value, TensorDictBase):
            return f"expected a TensorDict, got {type(value).__name__}"
        for key, spec in self._specs.items():
            if key not in value.keys():
                return f"missing key {key!r} (present: {sorted(map(str, value.keys()))})"
            why = spec.mismatch(value.get(key))
            if why is not None:
                sub = why if isinstance(spec, Composite) else f"{key!r}: {why}"
                return f"{key!r} > {why}" if isinstance(spec, Composite) else sub
        return None

    def is_in(self, value: TensorDictBase) -> bool:
        return self.mismatch(value) is None

    def project(self, value: TensorDictBase) -> TensorDictBase:
        out = value.empty()
        for key, spec in self._specs.items():
            if key in value.keys():
                out.set(key, spec.project(value.get(key)))
        return out

    def encode(self, value: dict) -> TensorDict:
        return TensorDict(
            {key: spec.encode(value[key]) for key, spec in self._specs.items() if key in value},
            batch_size=self.shape,
            device=self._device,
        )

    # --- copies ----------------------------------------------------------------------
    def expand(self, *shape: int) -> Composite:
        new = _expand_args(shape)
        _check_expand(self.shape, new, "Composite")
        lead = new[: len(new) - len(self.shape)]
        return Composite({k: v.expand(*lead, *v.shape) for k, v in self._specs.items()}, shape=new, device=self._device)

    def unsqueeze(self, dim: int) -> Composite:
        if dim < 0:
            dim += self.ndim + 1
        shape = list(self.shape)
        shape.insert(dim, 1)
        return Composite({k: v.unsqueeze(dim) for k, v in self._specs.items()}, shape=shape, device=self._device)

    def squeeze(self, dim: int) -> Composite:
        if dim < 0:
            dim += self.ndim
        if self.shape[dim] != 1:
            return self.clone()
        shape = [s for i, s in enumerate(self.shape) if i != dim]
        return Composite({k: v.squeeze(dim) for k, v in self._specs.items()}, shape=shape, device=self._device)

    def drop_leading_dims(self, n: int) -> Composite:
        """This spec and its entries without their first ``n`` dims."""
        return Composite(
            {k: v.drop_leading_dims(n) for k, v in self._specs.items()}, shape=self.shape[n:], device=self._device
        )

    def to(self, dest: str | int | torch.device | torch.dtype) -> Composite:
        device = self._device if isinstance(dest, torch.dtype) else torch.device(dest)
        return Composite({k: v.to(dest) for k, v in self._specs.items()}, shape=self.shape, device=device)

    def cpu(self) -> Composite:
        return self.to("cpu")

    def clone(self) -> Composite:
        return Composite({k: v.clone() for k, v in self._specs.items()}, shape=self.shape, device=self._device)

    def select(self, *keys: NestedKey, strict: bool = True) -> Composite:
        out = Composite(shape=self.shape, device=self._device)
        for key in keys:
            if key in self:
                out[key] = self[key].clone()
            elif strict:
                raise KeyError(f"spec key {key!r} not found; keys are {self.keys(True)}")
        return out

    def exclude(self, *keys: NestedKey) -> Composite:
        out = self.clone()
        for key in keys:
            if key in out:
                del out[key]
        return out

    def empty(self) -> Composite:
        return Composite(shape=self.shape, device=self._device)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Composite)
            and self.shape == other.shape
            and set(self._specs) == set(other._specs)
            and all(self._specs[k] == other._specs[k] for k in self._specs)
        )

    # No __hash__: defining __eq__ sets it to None, and specs are mutable containers of tensors.

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {k}: " + repr(v).replace("\n", "\n    ") for k, v in self._specs.items())
        return (
            f"Composite(\n{inner},\n    shape={tuple(self.shape)})"
            if inner
            else f"Composite(shape={tuple(self.shape)})"
        )
