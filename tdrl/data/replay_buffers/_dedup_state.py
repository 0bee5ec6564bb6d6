"""A :class:`~tdrl.data.replay_buffers.DedupNextStorage`'s saved state: its link codes, and the checks before a load.

The state holds the wrapped storage's items, the keys stored once, the structure of the
items as written, and per item a link: ``_LINKED`` (its next values are the following
slot's), or the index of its next values among the ``"kept"`` tensors (``_UNWRITTEN`` marks
an empty slot in memory, never in a state). A state is checked field by field before
anything is loaded, so a damaged or foreign one changes nothing.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._dedup_keys import _key_list, _keys_argument, _next_key
from tdrl.data.replay_buffers._layout import TensorLayout

__all__: list[str] = []

_LINKED = -1  # the next value is the following slot's observation
_UNWRITTEN = -2  # no item at this slot


def saved_keys(state: dict[str, Any], own_keys: tuple[NestedKey, ...] | None) -> tuple[NestedKey, ...] | None:
    """The keys a state was written with, checked against ``own_keys`` (the storage's; ``None``: any)."""
    theirs = checks.entry(state, "keys")
    if theirs is None:
        return None
    if not isinstance(theirs, list) or not all(
        isinstance(k, list) and k and all(isinstance(p, str) for p in k) for k in theirs
    ):
        raise checks.StateError("keys", f"must list keys as lists of names, got {theirs!r}")
    try:
        keys = _keys_argument([tuple(k) if len(k) > 1 else k[0] for k in theirs])
    except (TypeError, ValueError) as err:
        raise checks.StateError("keys", str(err)) from None
    if own_keys is not None and keys != own_keys:
        raise ValueError(
            f"the checkpoint's DedupNextStorage stores the next twins of {_key_list(keys or ())} "
            f"once, this one those of {_key_list(own_keys)}; build the storage with the "
            "checkpoint's keys="
        )
    return keys


def check_state(
    state: dict[str, Any],
    length: int,
    keys: tuple[NestedKey, ...] | None,
    own_layout: TensorLayout | None,
    max_size: int,
) -> None:
    """Raises unless ``state`` fits a storage of ``max_size`` slots that holds ``own_layout``'s items.

    Checks what the wrapped storage's own check does not: the items' count and structure
    against the storage's, the kept next values and the links. ``length`` and ``keys`` are
    the state's, already checked (the storage's ``_check_common``, :func:`saved_keys`), and
    so are its items (by the wrapped storage).
    """
    items = state["items"]
    if items["len"] != length or items["last_cursor"] != state["last_cursor"]:
        raise checks.StateError(
            "items", f"holds {items['len']} items (last written at {items['last_cursor']}), the storage {length}"
        )
    link = cast(torch.Tensor, checks.tensor(state, "link", shape=(length,), dtype=torch.long))
    kept = checks.entry(state, "kept")
    if not isinstance(kept, list):
        raise checks.StateError("kept", f"must be a list of tensors, got {type(kept).__name__}")
    described = checks.entry(state, "layout")
    if described is None:
        if length or kept or items["layout"] is not None:
            raise checks.StateError("layout", f"is missing for a storage holding {length} items")
        return
    try:
        layout = TensorLayout.from_json(described)
    except ValueError as err:
        raise checks.StateError("layout", str(err)) from None
    problem = None if own_layout is None else own_layout.mismatch(layout)
    if problem is not None:
        raise ValueError(
            f"the checkpoint was written for another structure: {problem}; load it into a fresh "
            "storage, or one that holds the same keys, shapes and dtypes"
        )
    if keys is None:
        raise checks.StateError("keys", f"is missing for a storage holding {length} items")
    if items["layout"] is None:
        raise checks.StateError("items.layout", "is missing while the storage describes its items")
    inner_layout = TensorLayout.from_json(items["layout"])
    next_keys = [_next_key(k) for k in keys]
    expected = {k for k in cast(tuple, layout.keys) if k not in next_keys}
    if set(cast(tuple, inner_layout.keys)) != expected or not all(k in layout for k in (*keys, *next_keys)):
        raise checks.StateError("layout", "does not match the keys of its items and deduplicated entries")
    if len(kept) != len(keys):
        raise checks.StateError("kept", f"holds {len(kept)} tensors for the {len(keys)} keys")
    owned = link >= 0
    count = int(owned.sum())
    for i, key in enumerate(next_keys):
        pos = layout.position(key)
        checks.tensor_value(kept[i], f"kept[{i}]", shape=(count, *layout.shapes[pos]), dtype=layout.dtypes[pos])
    if bool((link < _LINKED).any()):
        raise checks.StateError("link", f"holds {int(link.min())}, below {_LINKED}")
    if not torch.equal(link[owned], torch.arange(count)):
        raise checks.StateError("link", f"must number the kept next values 0 .. {count - 1} in order")
    linked = (~owned).nonzero().squeeze(-1)
    if linked.numel() and int(((linked + 1) % max_size).max()) >= length:
        raise checks.StateError("link", "shares the next values of an item with a slot that holds no item")
