"""Mock envs and contract-test mixins shipped with tdrl (used by its tests, usable by yours)."""

from tdrl.testing.contract import EnvContractTests
from tdrl.testing.mocks import ContinuousActionMock, CountingEnv, FailingEnv, IdentityEnv, NestedKeyMock
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv

__all__ = [
    "TransformContractTests",
    "TransformTestEnv",
    "EnvContractTests", "CountingEnv", "ContinuousActionMock", "IdentityEnv", "NestedKeyMock", "FailingEnv"]
