"""tdrl._fast_td: the hot paths' reads and writes behave exactly like TensorDict.get/set."""

from __future__ import annotations

import pytest
import torch
from tensordict import LazyStackedTensorDict, NonTensorData, TensorDict

from tdrl._fast_td import read, write


def test_write_stores_the_tensor_itself_when_its_layout_is_valid():
    td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    value = torch.ones(3, 5)
    assert write(td, "y", value) is td
    assert td.get("y") is value
    assert read(td, "y") is value


def test_write_keeps_tensordicts_checks():
    td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    with pytest.raises(RuntimeError, match="batch dimension mismatch"):
        write(td, "y", torch.zeros(4))
    with pytest.raises(RuntimeError, match="locked"):
        write(td.lock_(), "y", torch.zeros(3))


def test_write_on_a_tensordict_with_a_device_and_on_nested_keys():
    td = TensorDict({}, [2], device="cpu")
    write(td, ("a", "b"), torch.zeros(2, 1))
    assert td["a", "b"].shape == (2, 1)
    assert td["a"].device == torch.device("cpu")
    write(td, "c", torch.zeros(2))
    assert td["c"].device == torch.device("cpu")


def test_read_matches_get():
    td = TensorDict({"x": torch.zeros(2), "sub": {"y": torch.ones(2)}}, [2])
    td.set("note", NonTensorData("hello", batch_size=[2]))
    for key in ("x", "sub", ("sub", "y"), "note", "missing"):
        expected = td.get(key, None)
        got = read(td, key)
        assert type(got) is type(expected)
        if isinstance(expected, torch.Tensor):
            assert got is expected


def test_other_tensordict_types_take_the_get_set_road():
    stacked = LazyStackedTensorDict.lazy_stack([TensorDict({"x": torch.zeros(1)}, []) for _ in range(2)])
    write(stacked, "y", torch.ones(2, 1))
    assert torch.equal(read(stacked, "y"), torch.ones(2, 1))
