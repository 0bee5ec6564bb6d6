"""Mock envs, an in-memory logger and contract-test mixins shipped with tdrl (used by its tests, usable by yours).

The mock envs import nothing beyond tdrl's dependencies. The contract-test mixins
(``EnvContractTests``, ``TransformContractTests``) need pytest and are imported on first use.
"""

from __future__ import annotations

from typing import Any

from tdrl.testing.memory import RecallEnv
from tdrl.testing.mocks import ContinuousActionMock, CountingEnv, FailingEnv, IdentityEnv, NestedKeyMock
from tdrl.testing.multiagent import MultiAgentNavigationMock

__all__ = [
    "CountingEnv",
    "ContinuousActionMock",
    "IdentityEnv",
    "NestedKeyMock",
    "FailingEnv",
    "MultiAgentNavigationMock",
    "RecallEnv",
    "MemoryLogger",
    "EnvContractTests",
    "TransformContractTests",
    "TransformTestEnv",
    "relay_env",
]

_LAZY = {
    "MemoryLogger": "tdrl.testing.loggers",
    "EnvContractTests": "tdrl.testing.contract",
    "TransformContractTests": "tdrl.testing.transform_contract",
    "TransformTestEnv": "tdrl.testing.transform_contract",
    "relay_env": "tdrl.testing.pettingzoo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tdrl.testing' has no attribute {name!r}")
