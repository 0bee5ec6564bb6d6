"""tdrl: a composable reinforcement-learning toolkit for PyTorch, built on TensorDict.

Importing ``tdrl`` has no side effects: no start-method change, no warning filters,
no global flags. The subpackages (``tdrl.envs``, ``tdrl.modules``, ``tdrl.collectors``,
``tdrl.data``, ``tdrl.objectives``, ``tdrl.record``, ``tdrl.trainers``) hold the API.
``tdrl.logger`` (the ``"tdrl"`` ``logging.Logger``) and ``tdrl.timeit`` (named timers) come from
``tdrl._utils``, imported on first use, as TorchRL's ``torchrl.logger`` and ``torchrl.timeit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__version__ = "0.1.0"
"""The version of this tdrl package."""

__all__ = ["__version__", "logger", "timeit"]

logger: logging.Logger  # set on first use by __getattr__ below
"""The ``logging.Logger`` named ``"tdrl"`` (level INFO, printing to stdout), TorchRL's ``torchrl.logger``."""

_LAZY = {"logger", "timeit"}  # from tdrl._utils, loaded on first use so that `import tdrl` configures nothing


def __getattr__(name: str) -> Any:
    """``tdrl.logger`` and ``tdrl.timeit`` (TorchRL's ``torchrl.logger``/``torchrl.timeit``), imported on first use."""
    if name in _LAZY:
        from tdrl import _utils

        return getattr(_utils, name)
    raise AttributeError(f"module 'tdrl' has no attribute {name!r}")
