"""The recurrent-mode switch: whether recurrent modules run step by step or over sequences.

Not imported from here by users: ``tdrl.modules`` and ``tdrl.modules.rnn`` export
:func:`recurrent_mode` and :class:`set_recurrent_mode`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["recurrent_mode", "set_recurrent_mode"]

_F = TypeVar("_F", bound=Callable[..., Any])

_MODE_STACK: list[bool | None] = [None]


def recurrent_mode() -> bool | None:
    """The recurrent mode set by the innermost :class:`set_recurrent_mode` (None outside any).

    Examples:
        >>> recurrent_mode() is None
        True
        >>> with set_recurrent_mode(True):
        ...     recurrent_mode()
        True
    """
    return _MODE_STACK[-1]


class set_recurrent_mode:
    """Run the recurrent modules in recurrent (sequence) or step mode; a context manager or decorator.

    Args:
        mode: ``True`` or ``"recurrent"`` (the last batch dim is time), ``False`` or
            ``"sequential"`` (every element is one step), or ``None`` (each module's
            ``default_recurrent_mode``).

    Raises:
        ValueError: for a string other than ``"recurrent"`` or ``"sequential"``.

    Examples:
        >>> @set_recurrent_mode("recurrent")
        ... def train_step():
        ...     return recurrent_mode()
        >>> train_step(), recurrent_mode()
        (True, None)
    """

    def __init__(self, mode: bool | str | None = True) -> None:
        if isinstance(mode, str):
            lowered = mode.lower()
            if lowered not in ("recurrent", "sequential"):
                raise ValueError(
                    f"set_recurrent_mode: mode must be a bool, None, 'recurrent' or 'sequential'; got {mode!r}."
                )
            mode = lowered == "recurrent"
        self.mode = mode

    def __enter__(self) -> None:
        _MODE_STACK.append(self.mode)

    def __exit__(self, *exc: object) -> None:
        _MODE_STACK.pop()

    def __call__(self, fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with set_recurrent_mode(self.mode):
                return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    def clone(self) -> set_recurrent_mode:
        """A fresh context manager with the same mode."""
        return set_recurrent_mode(self.mode)
