"""``ClassProperty``: a read-only attribute computed from the class, such as ``GymEnv.available_envs``.

TorchRL's backends expose ``available_envs`` on the class (no instance, no call), so the
backends here share one descriptor for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ClassProperty"]


class ClassProperty:
    """A read-only property evaluated on the class, read as ``Cls.name`` or ``instance.name``.

    Args:
        getter: called with the class each time the attribute is read.

    Examples:
        >>> class Registry:
        ...     @ClassProperty
        ...     def names(cls):
        ...         return [cls.__name__]
        >>> Registry.names, Registry().names
        (['Registry'], ['Registry'])
    """

    def __init__(self, getter: Callable[[Any], Any]) -> None:
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: Any, owner: type) -> Any:
        return self.getter(owner)
