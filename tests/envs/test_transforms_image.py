"""Crop: contract on pixel envs, the window it keeps, spec bounds, errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import Crop, ToTensorImage, TransformedEnv
from tdrl.specs import Bounded, Composite
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TestCrop(TransformContractTests):
    def make_transform(self):
        return Crop(w=3, h=2, top=1, left=2)

    def make_env(self):
        return TransformedEnv(TransformTestEnv(pixels=(6, 5)), ToTensorImage())

    def make_batched_env(self):
        return TransformedEnv(TransformTestEnv(pixels=(6, 5), batch_size=[3]), ToTensorImage())


class TestCropRenamed(TestCrop):
    def make_transform(self):
        return Crop(4, in_keys=["pixels"], out_keys=["crop"])


def test_crop_keeps_the_window():
    img = torch.arange(2 * 5 * 6).view(2, 5, 6)
    out = Crop(w=3, h=2, top=2, left=1)(TensorDict({"pixels": img}, []))["pixels"]
    assert torch.equal(out, img[:, 2:4, 1:4])


def test_crop_spec_keeps_the_window_bounds():
    low = torch.arange(20.0).view(4, 5)
    spec = Composite(pixels=Bounded(low, low + 1, shape=(4, 5)))
    out = Crop(2, top=1, left=3).transform_observation_spec(spec)["pixels"]
    assert out.shape == (2, 2)
    assert torch.equal(out.space.low, low[1:3, 3:5])


def test_crop_window_must_fit():
    with pytest.raises(ValueError, match=r"does not fit 'pixels' of shape \(6, 5, 3\)"):
        TransformedEnv(TransformTestEnv(pixels=(6, 5)), Crop(4))
    with pytest.raises(ValueError, match="does not fit an image"):
        Crop(2, top=4)(TensorDict({"pixels": torch.zeros(3, 5, 5)}, []))
    with pytest.raises(ValueError, match="w and h must be >= 1"):
        Crop(0)
