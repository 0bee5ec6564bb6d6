"""Key handling shared by losses and estimators: renaming, and readable missing-key errors.

``str(KeyError("..."))`` shows the message's repr (quotes, escaped quotes inside); a
missing-key message that lists the keys present must stay readable, hence
:class:`MissingKeyError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tensordict import TensorDictBase
from tensordict.utils import NestedKey

__all__ = ["MissingKeyError", "keys_repr", "rename_keys", "next_key"]


class MissingKeyError(KeyError):
    """A ``KeyError`` whose ``str`` is its message.

    Examples:
        >>> str(MissingKeyError("key 'a' not found"))
        "key 'a' not found"
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def keys_repr(data: TensorDictBase) -> str:
    """The keys of ``data`` (nested ones as tuples), sorted, for error messages."""
    return "[" + ", ".join(sorted((repr(k) for k in data.keys(True, True)), key=lambda s: (s.startswith("("), s))) + "]"


def next_key(key: NestedKey) -> tuple:
    """``("next", *key)``: where an env writes the step output ``key``."""
    return ("next", key) if isinstance(key, str) else ("next", *key)


def rename_keys(owner: str, tensor_keys: Any, renames: Mapping[str, NestedKey | None]) -> None:
    """Sets the fields of a keys dataclass; ``advantage_key=...`` spellings work too.

    Raises:
        ValueError: for a name that is not a field, listing the accepted ones.
    """
    fields = {f.name for f in dataclasses.fields(tensor_keys)}
    for name, key in renames.items():
        field = name[: -len("_key")] if name.endswith("_key") and name not in fields else name
        if field not in fields:
            raise ValueError(f"{owner}.set_keys: unknown key name {name!r}; accepted names: {sorted(fields)}.")
        if key is not None:
            setattr(tensor_keys, field, key)
