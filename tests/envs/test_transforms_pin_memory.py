"""PinMemoryTransform: contract and pinned outputs where an accelerator exists; a clear refusal where none does."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import PinMemoryTransform, TransformedEnv
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests

needs_pinning = pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")


@needs_pinning
class TestPinMemory(TransformContractTests):
    def make_transform(self):
        return PinMemoryTransform()


@needs_pinning
def test_outputs_are_pinned_and_unchanged():
    env = TransformedEnv(CountingEnv(batch_size=[2]), PinMemoryTransform())
    ro = env.rollout(3)
    assert ro["next", "observation"].is_pinned()
    assert ro["next", "observation"][0].squeeze(-1).tolist() == [1.0, 2.0, 3.0]
    td = PinMemoryTransform()(TensorDict({"x": torch.ones(2), "next": {"x": torch.zeros(2)}}, []))
    assert td["x"].is_pinned()
    assert td["next", "x"].is_pinned()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without an accelerator")
def test_refused_without_an_accelerator():
    with pytest.raises(RuntimeError, match=r"needs an accelerator.*Fix: drop the transform"):
        PinMemoryTransform()
