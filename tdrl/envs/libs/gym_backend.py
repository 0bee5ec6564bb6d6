"""TorchRL's gym-backend switch: ``set_gym_backend`` and ``gym_backend``, for gymnasium only.

TorchRL can run its gym wrappers on ``gym`` or ``gymnasium``; tdrl wraps gymnasium only.
``set_gym_backend("gymnasium")`` (or the gymnasium module, or a callable returning it)
is accepted as a context manager, a decorator or with ``.set()``, and changes nothing;
any other backend raises at once, saying so.

Examples:
    >>> import gymnasium
    >>> from tdrl.envs.libs.gym_backend import gym_backend, set_gym_backend
    >>> with set_gym_backend("gymnasium"):
    ...     gym_backend() is gymnasium
    True
    >>> gym_backend("spaces") is gymnasium.spaces
    True
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["set_gym_backend", "gym_backend"]

_ONLY_GYMNASIUM = (
    "set_gym_backend: tdrl wraps gymnasium only, got backend {name!r}. Fix: pass 'gymnasium' (or the gymnasium "
    "module), and port code written for the old 'gym' package to gymnasium (gymnasium.make, 5-tuple step)."
)


def _module_name(backend: Any) -> str:
    if isinstance(backend, str):
        return backend
    if isinstance(backend, ModuleType):
        return backend.__name__
    if callable(backend):
        return _module_name(backend())
    return repr(backend)


class set_gym_backend:
    """Select the gym backend: only gymnasium is available in tdrl (see the module docstring).

    Args:
        backend: ``"gymnasium"``, the gymnasium module, or a callable returning it.

    Raises:
        ValueError: for any other backend (``"gym"`` included).

    Examples:
        >>> @set_gym_backend("gymnasium")
        ... def make():
        ...     return gym_backend().__name__
        >>> make()
        'gymnasium'
        >>> set_gym_backend("gym")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: set_gym_backend: tdrl wraps gymnasium only, got backend 'gym'. Fix: ...
    """

    def __init__(self, backend: str | ModuleType | Callable[[], ModuleType]) -> None:
        name = _module_name(backend)
        if name != "gymnasium":
            raise ValueError(_ONLY_GYMNASIUM.format(name=name))
        self._backend = backend

    @property
    def backend(self) -> ModuleType:
        """The backend module (gymnasium)."""
        return importlib.import_module("gymnasium")

    def set(self) -> None:
        """Select the backend for the rest of the program (gymnasium is always selected)."""

    def __enter__(self) -> set_gym_backend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper

    def clone(self) -> set_gym_backend:
        """A copy of this selector (TorchRL's decorator protocol)."""
        return set_gym_backend(self._backend)


def gym_backend(submodule: str | None = None) -> ModuleType:
    """The gym backend module (gymnasium), or one of its submodules.

    Args:
        submodule: e.g. ``"wrappers"`` or ``"spaces"`` (a leading dot is allowed).

    Examples:
        >>> gym_backend("wrappers").__name__
        'gymnasium.wrappers'
    """
    if submodule is None:
        return importlib.import_module("gymnasium")
    return importlib.import_module("gymnasium." + submodule.lstrip("."))
