"""tdrl: a composable reinforcement-learning toolkit for PyTorch, built on TensorDict.

Importing ``tdrl`` has no side effects: no start-method change, no warning filters,
no global flags. The subpackages (``tdrl.envs``, ``tdrl.modules``, ``tdrl.collectors``,
``tdrl.data``, ``tdrl.objectives``, ``tdrl.record``, ``tdrl.trainers``) hold the API.
"""

from __future__ import annotations

__version__ = "0.1.0"
"""The version of this tdrl package."""

__all__ = ["__version__"]
