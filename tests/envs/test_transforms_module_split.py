"""``tdrl.envs.transforms.transforms`` holds the Transform base only; what moved out keeps its import paths."""

from __future__ import annotations

import importlib
import pathlib

import pytest
import torch
from tensordict import TensorDict

import tdrl.envs
import tdrl.envs.transforms as package
from tdrl.envs.transforms import transforms as base_module

_LIMIT = 600  # lines per module (STYLE.md: one concept per module)


@pytest.mark.parametrize("path", sorted(pathlib.Path(package.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_every_transforms_module_is_under_the_size_limit(path):
    n = len(path.read_text().splitlines())
    assert n <= _LIMIT, f"{path.name} has {n} lines (limit {_LIMIT}): split a concept out"


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("Compose", "tdrl.envs.transforms.compose"),
        ("_as_transform", "tdrl.envs.transforms._callable"),
        ("_CallableTransform", "tdrl.envs.transforms._callable"),
        ("_apply_to_composite", "tdrl.envs.transforms._spec_decorators"),
        ("_apply_to_composite_inv", "tdrl.envs.transforms._spec_decorators"),
    ],
)
def test_moved_names_are_the_same_objects_through_the_old_path(name, module):
    assert getattr(base_module, name) is getattr(importlib.import_module(module), name)


def test_old_from_import_of_compose_still_works():
    from tdrl.envs.transforms.transforms import Compose, Transform

    assert Compose is package.Compose is tdrl.envs.Compose
    assert issubclass(Compose, Transform)


def test_public_names_are_unchanged_by_the_split():
    assert {"Compose", "Transform", "TransformedEnv", "ObservationNorm"} <= set(package.__all__)
    assert set(package.__all__) <= set(tdrl.envs.__all__)


def test_a_function_in_a_compose_is_wrapped_and_applied():
    t = package.Compose(lambda td: td.set("seen", torch.ones(2)))
    out = t(TensorDict({"x": torch.zeros(2)}, [2]))
    assert type(t[0]).__name__ == "_CallableTransform"
    assert out["seen"].tolist() == [1.0, 1.0]
