"""make_composite_from_td: a spec per entry, as TorchRL's; what it refuses."""

from __future__ import annotations

import pytest
import torch
from tensordict import NonTensorData, TensorDict

from tdrl.envs.utils import make_composite_from_td
from tdrl.specs import Composite, Unbounded


def _data() -> TensorDict:
    return TensorDict(
        {
            "obs": torch.randn(4, 3),
            "count": torch.zeros(4, dtype=torch.int64),
            "pixels": torch.zeros(4, 2, 5, 5, dtype=torch.uint8),
            "next": TensorDict({"obs": torch.randn(4, 3), "reward": torch.randn(4, 1)}, [4]),
        },
        [4],
    )


def _leaves(spec: Composite) -> dict:
    return {key: (tuple(leaf.shape), leaf.dtype) for key, leaf in spec.items(include_nested=True, leaves_only=True)}


def test_each_entry_gets_an_unbounded_spec_of_its_shape_and_dtype():
    data = _data()
    spec = make_composite_from_td(data)
    assert spec.shape == torch.Size([4])
    assert isinstance(spec["next"], Composite)
    assert all(isinstance(leaf, Unbounded) for leaf in spec.values(include_nested=True, leaves_only=True))
    assert _leaves(spec)["pixels"] == ((4, 2, 5, 5), torch.uint8)
    assert spec.is_in(data)
    assert spec.zero().shape == data.shape


def test_scalars_get_shape_one_unless_told_otherwise():
    data = TensorDict({"r": torch.tensor(1.0)}, [])
    assert make_composite_from_td(data)["r"].shape == torch.Size([1])
    assert make_composite_from_td(data, unsqueeze_null_shapes=False)["r"].shape == torch.Size([])


def test_what_tdrl_specs_cannot_describe_is_refused():
    with pytest.raises(ValueError, match="static shapes"):
        make_composite_from_td(_data(), dynamic_shape=True)
    data = TensorDict({"obs": torch.zeros(3), "text": NonTensorData("hello")}, [])
    with pytest.raises(TypeError, match=r"'text'.*no tdrl spec"):
        make_composite_from_td(data)


def test_same_shapes_and_dtypes_as_torchrl():
    trl_utils = pytest.importorskip("torchrl.envs.utils")
    for data in (_data(), TensorDict({"a": torch.tensor(2), "b": {"c": torch.ones(2, dtype=torch.bool)}}, [])):
        for unsqueeze in (True, False):
            ours = make_composite_from_td(data, unsqueeze_null_shapes=unsqueeze)
            theirs = trl_utils.make_composite_from_td(data, unsqueeze_null_shapes=unsqueeze)
            assert ours.shape == theirs.shape
            assert _leaves(ours) == _leaves(theirs)
