"""TorchRL's import path ``torchrl.envs.transforms.transforms`` works as ``tdrl.envs.transforms.transforms``."""

from __future__ import annotations

import importlib

import pytest

import tdrl.envs.transforms as package


@pytest.mark.parametrize("name", package.__all__)
def test_every_transform_is_importable_from_the_transforms_module(name):
    module = importlib.import_module("tdrl.envs.transforms.transforms")
    assert getattr(module, name) is getattr(package, name)


def test_an_unknown_name_raises_attribute_error():
    module = importlib.import_module("tdrl.envs.transforms.transforms")
    with pytest.raises(AttributeError, match="has no attribute 'NotATransform'"):
        module.NotATransform  # noqa: B018
