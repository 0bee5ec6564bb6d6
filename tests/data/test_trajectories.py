"""find_start_stop_traj: boundaries from ids or end flags, circular storages, and parity with TorchRL 0.14.1."""

from __future__ import annotations

import pytest
import torch

from tdrl.data import find_start_stop_traj


def test_ids_and_flags_give_the_same_boundaries():
    ids = torch.tensor([5, 5, 5, 0, 0, 1, 1, 1, 5, 5])
    start, stop, lengths = find_start_stop_traj(trajectory=ids, at_capacity=True)
    assert start.squeeze(-1).tolist() == [8, 3, 5]  # the trajectory starting at row 8 wraps to row 2
    assert stop.squeeze(-1).tolist() == [2, 4, 7]
    assert lengths.tolist() == [5, 2, 3]
    end = ids != torch.roll(ids, -1)
    again = find_start_stop_traj(end=end, at_capacity=True)
    assert all(torch.equal(a, b) for a, b in zip(again, (start, stop, lengths)))


def test_a_partial_storage_ends_at_its_last_row_and_batch_columns_are_separate():
    end = torch.tensor([[False, True], [True, False], [False, False]])
    start, stop, lengths = find_start_stop_traj(end=end, at_capacity=False)
    assert start.tolist() == [[0, 0], [2, 0], [0, 1], [1, 1]]
    assert stop.tolist() == [[1, 0], [2, 0], [0, 1], [2, 1]]
    assert lengths.tolist() == [2, 1, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"at_capacity": True}, TypeError, "exactly one of trajectory="),
        ({"trajectory": torch.zeros(2), "end": torch.zeros(2), "at_capacity": True}, TypeError, "exactly one"),
        ({"end": torch.zeros(0, dtype=torch.bool), "at_capacity": False}, ValueError, "needs a time dim"),
        ({"end": torch.tensor(True), "at_capacity": False}, ValueError, "needs a time dim"),
        ({"end": torch.zeros(3, dtype=torch.bool), "at_capacity": True, "cursor": 1.5}, TypeError, "cursor must be"),
        ({"end": torch.zeros(3, dtype=torch.bool), "at_capacity": True, "cursor": range(0)}, ValueError, "empty"),
    ],
)
def test_bad_input_is_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        find_start_stop_traj(**kwargs)


@pytest.mark.parametrize("shape", [(12,), (12, 3), (9, 2, 3)])
@pytest.mark.parametrize("at_capacity", [False, True])
@pytest.mark.parametrize("cursor", [None, 4, torch.tensor([2, 5]), range(3, 7)])
@pytest.mark.parametrize("from_ids", [False, True])
def test_matches_torchrl(shape, at_capacity, cursor, from_ids):
    theirs_fn = pytest.importorskip("torchrl.data").find_start_stop_traj
    gen = torch.Generator().manual_seed(sum(shape) + int(at_capacity))
    for _ in range(5):
        if from_ids:
            ids = torch.cumsum(torch.rand(shape, generator=gen) < 0.3, 0)
            kwargs = {"trajectory": ids}
        else:
            kwargs = {"end": torch.rand(shape, generator=gen) < 0.25}
        ours = find_start_stop_traj(at_capacity=at_capacity, cursor=cursor, **kwargs)
        theirs = theirs_fn(at_capacity=at_capacity, cursor=cursor, **{k: v.clone() for k, v in kwargs.items()})
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), (a, b)
