"""The frozen structure of what a tensor storage holds: leaf keys, per-item shapes and dtypes.

A :class:`TensorLayout` is built once, from the first batch a storage receives. It then
validates every later write (naming the key, the expected and the found shape), and
rebuilds sampled rows into a TensorDict without going through TensorDict's per-item
machinery. Checkpoints store it as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey

from tdrl._compat import td_unchecked

__all__ = ["TensorLayout", "key_str", "dtype_from_str"]

Data = TensorDictBase | torch.Tensor


def key_str(key: NestedKey | None) -> str:
    """Formats a (nested) key for error messages: ``'obs'`` or ``('next', 'reward')``."""
    return "<tensor>" if key is None else repr(key)


def dtype_from_str(name: str) -> torch.dtype:
    """Parses ``"torch.float32"`` (or ``"float32"``) back into a dtype, without eval.

    Raises:
        ValueError: when the name is not a torch dtype.
    """
    short = name[len("torch.") :] if name.startswith("torch.") else name
    attr = getattr(torch, short, None) if short.isidentifier() else None
    if not isinstance(attr, torch.dtype):
        raise ValueError(f"{name!r} is not a torch dtype")
    return attr


def _build_tree(keys: Sequence[NestedKey], group_dims: dict[tuple[str, ...], torch.Size]) -> dict[str, Any]:
    """Maps each leaf key to its position, as nested dicts mirroring the TensorDict; a nested
    TensorDict is ``(its dict, the batch dims it adds to its parent's)``."""
    tree: dict[str, Any] = {}
    for pos, key in enumerate(keys):
        # a leaf key of ``items(include_nested=True)`` is a string or a flat tuple of strings
        path = (key,) if isinstance(key, str) else cast("tuple[str, ...]", key)
        node = tree
        for depth, part in enumerate(path[:-1]):
            node = node.setdefault(part, ({}, group_dims.get(path[: depth + 1], torch.Size())))[0]
        node[path[-1]] = pos
    return tree


def _limits(dtype: torch.dtype) -> tuple[float, float]:
    if dtype == torch.bool:
        return 0, 1
    info = torch.finfo(dtype) if (dtype.is_floating_point or dtype.is_complex) else torch.iinfo(dtype)
    return info.min, info.max


_OVERFLOW: dict[tuple[torch.dtype, torch.dtype], bool] = {}
_REAL_PART = {torch.complex32: torch.float16, torch.complex64: torch.float32, torch.complex128: torch.float64}


def _may_overflow(source: torch.dtype, column: torch.dtype) -> bool:
    """Whether a value of ``source`` can lie outside the range of ``column`` (cached per pair)."""
    pair = (source, column)
    if pair not in _OVERFLOW:
        low, high = _limits(source)
        column_low, column_high = _limits(column)
        _OVERFLOW[pair] = low < column_low or high > column_high
    return _OVERFLOW[pair]


def _check_range(key: NestedKey | None, leaf: torch.Tensor, column: torch.dtype) -> None:
    """Refuses values that ``column`` cannot hold: out of range for an integer column, or
    finite values that would overflow to infinity in a floating one (rounding to the
    column's precision is what any cast does, and is allowed)."""
    if leaf.numel() == 0:
        return
    low, high = _limits(column)
    if column.is_floating_point or column.is_complex:
        values = torch.view_as_real(leaf) if leaf.is_complex() else leaf
        if not values.is_floating_point():
            values = values.double()
        bad = torch.isfinite(values) & (values.abs() > high)
    else:
        bad = (leaf < low) | (leaf > high)
    if not bool(bad.any()):
        return
    where = bad.nonzero()[0]
    value = (torch.view_as_real(leaf) if leaf.is_complex() else leaf)[tuple(where.tolist())]
    stored = value.to(_REAL_PART.get(column, column))
    kind = "range" if not (column.is_floating_point or column.is_complex) else "finite range"
    raise ValueError(
        f"entry {key_str(key)} holds {value.item()}, outside the {kind} [{low}, {high}] of the storage's "
        f"{column} (it would be stored as {stored.item()}); convert the data yourself (e.g. clamp it), "
        "or build the storage from data of a wider dtype"
    )


def _group_dims(data: TensorDictBase) -> dict[tuple[str, ...], torch.Size]:
    """The batch dims each nested TensorDict adds to its parent's, by path (only where it adds some)."""
    found: dict[tuple[str, ...], torch.Size] = {}

    def walk(node: TensorDictBase, path: tuple[str, ...]) -> None:
        for name, value in node.items():
            if isinstance(value, TensorDictBase):
                extra = value.batch_size[node.batch_dims :]
                if len(extra):
                    found[(*path, name)] = extra
                walk(value, (*path, name))

    walk(data, ())
    return found


class TensorLayout:
    """Leaf keys, per-item shapes and dtypes of the data held by a tensor storage.

    Args:
        keys: leaf keys in storage order, or ``None`` when the storage holds a plain tensor.
        shapes: per-item shape of each leaf (the leaf's shape without the storage dimension).
        dtypes: dtype of each leaf.
        item_batch: batch size of one item (``torch.Size([])`` for single transitions).
        group_dims: the batch dims that a nested TensorDict adds to its parent's, by path
            (``{("agents",): torch.Size([3])}`` for a group of 3 agents); the nested
            TensorDicts of a sample get them back, so ``sample["agents"].batch_size`` is
            ``[B, 3]`` as in the data written.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"obs": torch.zeros(4, 3), "next": {"reward": torch.zeros(4, 1)}}, [4])
        >>> layout = TensorLayout.from_data(data, batched=True)
        >>> layout.keys
        ('obs', ('next', 'reward'))
        >>> [tuple(s) for s in layout.shapes]
        [(3,), (1,)]

        A group of agents keeps its agent dim:

        >>> agents = TensorDict({"obs": torch.zeros(4, 2, 3)}, [4, 2])
        >>> layout = TensorLayout.from_data(TensorDict({"agents": agents}, [4]), batched=True)
        >>> layout.group_dims
        {('agents',): torch.Size([2])}
        >>> layout.build([torch.zeros(5, 2, 3)], [5], None)["agents"].batch_size
        torch.Size([5, 2])
    """

    __slots__ = ("_index", "_tree", "dtypes", "group_dims", "item_batch", "keys", "shapes")

    def __init__(
        self,
        keys: Sequence[NestedKey] | None,
        shapes: Sequence[torch.Size],
        dtypes: Sequence[torch.dtype],
        item_batch: torch.Size,
        group_dims: dict[tuple[str, ...], torch.Size] | None = None,
    ) -> None:
        self.keys: tuple[NestedKey, ...] | None = None if keys is None else tuple(keys)
        self.shapes = tuple(torch.Size(s) for s in shapes)
        self.dtypes = tuple(dtypes)
        self.item_batch = torch.Size(item_batch)
        self.group_dims = {tuple(path): torch.Size(dims) for path, dims in (group_dims or {}).items() if len(dims)}
        self._tree = None if self.keys is None else _build_tree(self.keys, self.group_dims)
        self._index: dict[NestedKey, int] = {} if self.keys is None else {k: i for i, k in enumerate(self.keys)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(cls, data: Data, *, batched: bool) -> TensorLayout:
        """Reads the layout of ``data``; ``batched`` says whether dim 0 indexes items.

        Raises:
            TypeError: for data that is neither a TensorDict nor a tensor, or a
                TensorDict holding non-tensor leaves.
        """
        skip = 1 if batched else 0
        if isinstance(data, torch.Tensor):
            if batched and data.ndim == 0:
                raise ValueError("extend() needs a batch: got a 0-dim tensor; use add() for one item")
            return cls(None, [data.shape[skip:]], [data.dtype], torch.Size([]))
        if not isinstance(data, TensorDictBase):
            raise TypeError(
                f"a tensor storage holds TensorDicts or tensors, got {type(data).__name__}; "
                "use ListStorage for arbitrary Python objects"
            )
        if batched and data.batch_dims == 0:
            raise ValueError("extend() needs a batch: got a TensorDict with batch_size=[]; use add() for one item")
        keys, shapes, dtypes = [], [], []
        for key, value in data.items(include_nested=True, leaves_only=True):
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"entry {key_str(key)} is a {type(value).__name__}, not a tensor; tensor storages "
                    "hold tensors only (use ListStorage for non-tensor data)"
                )
            keys.append(key)
            shapes.append(value.shape[skip:])
            dtypes.append(value.dtype)
        if not keys:
            raise ValueError("cannot store a TensorDict without any tensor entry")
        return cls(keys, shapes, dtypes, data.batch_size[skip:], _group_dims(data))

    @property
    def is_tensordict(self) -> bool:
        """Whether the stored data is a TensorDict (``False``: a plain tensor)."""
        return self.keys is not None

    def position(self, key: NestedKey) -> int:
        """Position of ``key`` among the leaves.

        Raises:
            KeyError: naming the key and the keys that exist.
        """
        if self.keys is None:
            raise KeyError(f"key {key_str(key)} not found: this storage holds a plain tensor")
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"key {key_str(key)} not found in the storage, which holds keys {list(self.keys)}") from None

    def __contains__(self, key: NestedKey) -> bool:
        if self.keys is None:
            return False
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        return key in self._index

    # ------------------------------------------------------------------ validation
    def leaves_of(self, data: Data, *, batched: bool) -> list[torch.Tensor]:
        """Returns the leaves of ``data`` in storage order, after checking its structure.

        Raises:
            TypeError: data of another kind or a leaf of an incompatible dtype.
            KeyError: a missing or an extra key.
            ValueError: a batch size or leaf shape that does not match the storage.
        """
        if self.keys is None:
            if not isinstance(data, torch.Tensor):
                raise TypeError(f"this storage holds tensors, got {type(data).__name__}")
            skip = 1 if batched else 0
            if batched and data.ndim == 0:
                raise ValueError("extend() needs a batch: got a 0-dim tensor; use add() for one item")
            self._check_leaf(None, 0, data, skip)
            return [data]
        if not isinstance(data, TensorDictBase):
            raise TypeError(f"this storage holds TensorDicts, got {type(data).__name__}")
        batch = data.batch_size
        expected_dims = len(self.item_batch) + (1 if batched else 0)
        if len(batch) != expected_dims or batch[len(batch) - len(self.item_batch) :] != self.item_batch:
            want = ("[N, " if batched else "[") + ", ".join(str(s) for s in self.item_batch) + "]"
            want = want.replace(", ]", "]")
            raise ValueError(
                f"data has batch_size={list(batch)} but this storage expects {want}; "
                + (
                    "use add() for a single item"
                    if batched and len(batch) == len(self.item_batch)
                    else "reshape the data (e.g. data.reshape(-1)) to match"
                )
            )
        if any(isinstance(key, tuple) for key in self.keys):  # nested TensorDicts: check their batch dims
            groups = _group_dims(data)
            if groups != self.group_dims:
                raise ValueError(
                    f"data has nested batch dims {_groups_str(groups)} but this storage expects "
                    f"{_groups_str(self.group_dims)} (the dims a nested TensorDict such as a group of agents adds "
                    "to its parent's batch_size); write data with the structure of the first batch, e.g. "
                    "TensorDict(..., batch_size=[N, n_agents]) for the group"
                )
        skip = 1 if batched else 0
        items = list(data.items(include_nested=True, leaves_only=True))
        keys = tuple(k for k, _ in items)
        if keys == self.keys:
            leaves = [v for _, v in items]
        else:
            found: dict[NestedKey, Any] = dict(items)
            missing = [k for k in self.keys if k not in found]
            extra = [k for k in keys if k not in self._index]
            if missing or extra:
                raise KeyError(
                    f"data does not match the storage structure: missing keys {missing}, "
                    f"unexpected keys {extra}; the storage holds {list(self.keys)}"
                )
            leaves = [found[k] for k in self.keys]
        for pos, leaf in enumerate(leaves):
            if not isinstance(leaf, torch.Tensor):
                raise TypeError(f"entry {key_str(self.keys[pos])} is a {type(leaf).__name__}, not a tensor")
            self._check_leaf(self.keys[pos], pos, leaf, skip)
        return cast("list[torch.Tensor]", leaves)  # every leaf was just checked to be a tensor

    def _check_leaf(self, key: NestedKey | None, pos: int, leaf: torch.Tensor, skip: int) -> None:
        shape = self.shapes[pos]
        if leaf.shape[skip:] != shape:
            raise ValueError(
                f"entry {key_str(key)} has shape {list(leaf.shape)}, expected "
                f"{(['N'] if skip else []) + list(shape)} (per-item shape {list(shape)}) "
                "as in the data this storage was created with"
            )
        dtype = self.dtypes[pos]
        if leaf.dtype != dtype:
            if not torch.can_cast(leaf.dtype, dtype):
                raise TypeError(
                    f"entry {key_str(key)} has dtype {leaf.dtype}, which cannot be stored in the "
                    f"storage's {dtype} without losing information; cast it first"
                )
            if _may_overflow(leaf.dtype, dtype):
                _check_range(key, leaf, dtype)

    # ------------------------------------------------------------------ building
    def build(self, leaves: Sequence[torch.Tensor], batch_size: Sequence[int], device: torch.device | None) -> Data:
        """Packs leaves (in storage order) into a TensorDict (or returns the tensor)."""
        if self._tree is None:
            return leaves[0]
        batch_size = torch.Size(batch_size)
        return self._build_node(self._tree, leaves, batch_size, device)

    def _build_node(
        self, node: dict[str, Any], leaves: Sequence[torch.Tensor], batch_size: torch.Size, device: Any
    ) -> TensorDict:
        source = {
            name: (
                leaves[child]
                if isinstance(child, int)
                else self._build_node(child[0], leaves, batch_size + child[1] if child[1] else batch_size, device)
            )
            for name, child in node.items()
        }
        return td_unchecked(source, batch_size, device)  # the leaves are checked by construction

    # ------------------------------------------------------------------ (de)serialization
    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible description (keys as lists of strings)."""
        return {
            "keys": None if self.keys is None else [[k] if isinstance(k, str) else list(k) for k in self.keys],
            "shapes": [list(s) for s in self.shapes],
            "dtypes": [str(d) for d in self.dtypes],
            "item_batch": list(self.item_batch),
            "group_dims": [[list(path), list(dims)] for path, dims in self.group_dims.items()],
        }

    @classmethod
    def from_json(cls, obj: Any) -> TensorLayout:
        """Inverse of :meth:`to_json`; checks every part of the description.

        Raises:
            ValueError: for a malformed description (naming the part that is wrong).
        """

        def sizes(value: Any, what: str) -> torch.Size:
            if (
                not isinstance(value, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
                or math.prod(value) >= 2**48
            ):
                raise ValueError(f"malformed storage layout: {what} is {value!r}, expected a list of sizes >= 0")
            return torch.Size(value)

        if not isinstance(obj, dict) or not {"keys", "shapes", "dtypes", "item_batch"} <= set(obj):
            raise ValueError(f"malformed storage layout {obj!r}: expected keys, shapes, dtypes and item_batch")
        raw_keys, raw_shapes, raw_dtypes = obj["keys"], obj["shapes"], obj["dtypes"]
        if not isinstance(raw_shapes, list) or not isinstance(raw_dtypes, list) or len(raw_shapes) != len(raw_dtypes):
            raise ValueError("malformed storage layout: shapes and dtypes must be lists of one entry per leaf")
        keys: list[NestedKey] | None = None
        if raw_keys is None:
            if len(raw_shapes) != 1:
                raise ValueError("malformed storage layout: a plain-tensor storage has exactly one leaf")
        else:
            if not isinstance(raw_keys, list) or len(raw_keys) != len(raw_shapes) or not raw_keys:
                raise ValueError("malformed storage layout: keys must list one key per leaf")
            paths = []
            for key in raw_keys:
                if not isinstance(key, list) or not key or not all(isinstance(p, str) and p for p in key):
                    raise ValueError(f"malformed storage layout: key {key!r} is not a list of names")
                paths.append(tuple(key))
            taken = set(paths)
            if len(taken) != len(paths):
                raise ValueError("malformed storage layout: a key is listed twice")
            for path in paths:
                if any(path[:n] in taken for n in range(1, len(path))):
                    raise ValueError(f"malformed storage layout: key {list(path)} lies under another leaf")
            keys = [p[0] if len(p) == 1 else p for p in paths]
        dtypes = []
        for name in raw_dtypes:
            if not isinstance(name, str):
                raise ValueError(f"malformed storage layout: dtype {name!r} is not a name")
            dtypes.append(dtype_from_str(name))
        shapes = [sizes(s, "a leaf shape") for s in raw_shapes]
        item_batch = sizes(obj["item_batch"], "item_batch")
        groups = _groups_from_json(obj.get("group_dims", []), keys, shapes, item_batch, sizes)  # absent: older files
        return cls(keys, shapes, dtypes, item_batch, groups)

    def mismatch(self, other: TensorLayout) -> str | None:
        """Describes the first difference with ``other`` (``None`` when they match)."""
        if self.is_tensordict != other.is_tensordict:
            kinds = ["a plain tensor", "a TensorDict"]
            return f"holds {kinds[other.is_tensordict]}, expected {kinds[self.is_tensordict]}"
        if self.item_batch != other.item_batch:
            return f"items have batch_size {list(other.item_batch)}, expected {list(self.item_batch)}"
        if self.group_dims != other.group_dims:
            return f"nested batch dims {_groups_str(other.group_dims)}, expected {_groups_str(self.group_dims)}"
        if self.keys != other.keys and set(self.keys or ()) != set(other.keys or ()):
            mine, theirs = set(self.keys or ()), set(other.keys or ())
            return f"missing keys {sorted(map(str, mine - theirs))}, unexpected keys {sorted(map(str, theirs - mine))}"
        for key, shape, dtype in zip(other.keys or [None], other.shapes, other.dtypes):
            pos = 0 if key is None else self.position(key)
            if self.shapes[pos] != shape:
                return f"entry {key_str(key)} has per-item shape {list(shape)}, expected {list(self.shapes[pos])}"
            if self.dtypes[pos] != dtype:
                return f"entry {key_str(key)} has dtype {dtype}, expected {self.dtypes[pos]}"
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorLayout) and self.mismatch(other) is None and self.keys == other.keys

    def __repr__(self) -> str:
        entries = ", ".join(
            f"{key_str(k)}: {list(s)} {str(d).replace('torch.', '')}"
            for k, s, d in zip(self.keys or [None], self.shapes, self.dtypes)
        )
        return f"TensorLayout({entries}; item_batch={list(self.item_batch)})"


def _groups_str(groups: dict[tuple[str, ...], torch.Size]) -> str:
    return "{" + ", ".join(f"{key_str(p if len(p) > 1 else p[0])}: {list(d)}" for p, d in groups.items()) + "}"


def _groups_from_json(
    raw: Any, keys: Sequence[NestedKey] | None, shapes: Sequence[torch.Size], item_batch: torch.Size, sizes: Any
) -> dict[tuple[str, ...], torch.Size]:
    """Reads ``group_dims`` back: each path must be a nested TensorDict above some leaf, whose
    leaves all have room for the dims it adds (checked against the leaf shapes)."""
    if not isinstance(raw, list):
        raise ValueError(f"malformed storage layout: group_dims is {raw!r}, expected a list of [path, dims]")
    paths = [(k,) if isinstance(k, str) else cast("tuple[str, ...]", k) for k in keys or ()]
    groups: dict[tuple[str, ...], torch.Size] = {}
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)):
            raise ValueError(f"malformed storage layout: group_dims entry {entry!r} is not [path, dims]")
        path = tuple(entry[0])
        if not path or not all(isinstance(p, str) and p for p in path) or path in groups:
            raise ValueError(f"malformed storage layout: group_dims path {entry[0]!r} is not a new list of names")
        below = [i for i, leaf in enumerate(paths) if len(leaf) > len(path) and leaf[: len(path)] == path]
        if not below:
            raise ValueError(f"malformed storage layout: group_dims path {list(path)} holds no leaf")
        groups[path] = sizes(entry[1], "a group's dims")
    for i, leaf in enumerate(paths):  # every leaf starts with the dims of the groups above it
        dims = [*item_batch, *(d for n in range(1, len(leaf)) for d in groups.get(leaf[:n], ()))]
        if list(shapes[i][: len(dims)]) != dims:
            raise ValueError(
                f"malformed storage layout: leaf {list(leaf)} has per-item shape {list(shapes[i])}, "
                f"which does not start with the item's and its groups' batch dims {dims}"
            )
    return groups
