"""The KeyError the objectives raise: its message prints as written.

``str(KeyError("..."))`` shows the message's repr (quotes, escaped quotes inside); a
missing-key message that lists the keys present must stay readable.
"""

from __future__ import annotations

from tensordict import TensorDictBase

__all__ = ["MissingKeyError", "keys_repr"]


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
