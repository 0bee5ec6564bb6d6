"""``split_trajectories(as_nested=...)``: one ragged row per trajectory, as TorchRL's."""

import pytest
import torch
from tensordict import TensorDict

from tdrl.collectors.utils import split_trajectories


def _batch():
    ids = torch.tensor([0, 0, 0, 1, 1, 2])
    return TensorDict({"obs": torch.arange(6.0).unsqueeze(-1), ("collector", "traj_ids"): ids}, batch_size=[6])


def test_nested_rows_are_the_trajectories_unpadded():
    nested = split_trajectories(_batch(), as_nested=True)
    assert nested.batch_size[0] == 3
    rows = nested["obs"].unbind(0)
    assert [r.squeeze(-1).tolist() for r in rows] == [[0.0, 1.0, 2.0], [3.0, 4.0], [5.0]]


def test_nested_matches_the_padded_result_where_the_mask_is_set():
    batch = _batch()
    padded = split_trajectories(batch)
    nested = split_trajectories(batch, as_nested=True)
    for i, row in enumerate(nested["obs"].unbind(0)):
        assert torch.equal(row, padded["obs"][i][padded["collector", "mask"][i]])


def test_nested_strided_layout_accepted_jagged_refused():
    assert split_trajectories(_batch(), as_nested=torch.strided)["obs"].is_nested
    with pytest.raises(ValueError, match=r"as_nested=torch.jagged.*as_nested=True"):
        split_trajectories(_batch(), as_nested=torch.jagged)


def test_matches_torchrl():
    utils = pytest.importorskip("torchrl.collectors.utils")
    ours = split_trajectories(_batch(), as_nested=True)
    theirs = utils.split_trajectories(_batch(), as_nested=True)
    assert ours.batch_size == theirs.batch_size
    for a, b in zip(ours["obs"].unbind(0), theirs["obs"].unbind(0), strict=True):
        assert torch.equal(a, b)
