"""Writers: round robin (with and without "index"), top-k by a rank key."""

from __future__ import annotations

import heapq

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyTensorStorage,
    ListStorage,
    ReplayBuffer,
    RoundRobinWriter,
    TensorDictMaxValueWriter,
    TensorDictReplayBuffer,
    TensorDictRoundRobinWriter,
)


def test_round_robin_wraps_and_overwrites_the_oldest(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(5), writer=RoundRobinWriter())
    assert rb.extend(make_transitions(3)).tolist() == [0, 1, 2]
    assert rb.extend(make_transitions(4, start=3)).tolist() == [3, 4, 0, 1]
    assert rb.add(make_transitions(1, start=7)[0]) == 2
    assert rb.storage.get(torch.arange(5))["observation"][:, 0].tolist() == [5, 6, 7, 3, 4]
    assert rb.write_count == 8
    assert len(rb) == 5


def test_round_robin_batch_larger_than_the_storage(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(4))
    rb.extend(make_transitions(1))
    index = rb.extend(make_transitions(10, start=1))
    assert index.tolist() == [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    # the newest four survive, each at the position its index says
    assert rb.storage.get(torch.arange(4))["observation"][:, 0].tolist() == [8, 9, 10, 7]
    assert rb.writer._cursor == 3


def test_empty_extend_is_a_no_op(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(4))
    assert rb.extend(make_transitions(0)).numel() == 0
    assert len(rb) == 0


def test_extend_without_batch_dimension_is_refused(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(4))
    with pytest.raises(ValueError, match="use add"):
        rb.extend(make_transitions(2)[0])


def test_tensordict_writer_writes_the_index(make_transitions):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(3))
    assert isinstance(rb.writer, TensorDictRoundRobinWriter)
    data = make_transitions(4)
    rb.extend(data)
    assert data["index"].tolist() == [0, 1, 2, 0]
    stored = rb.storage.get(torch.arange(3))
    assert stored["index"].tolist() == [0, 1, 2]  # each item knows its position
    assert stored["observation"][:, 0].tolist() == [3, 1, 2]


def test_tensordict_writer_broadcasts_the_index_over_item_dims():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4))
    data = TensorDict({"obs": torch.zeros(2, 5)}, [2, 5])
    rb.extend(data)
    assert data["index"].shape == (2, 5)
    assert (data["index"][1] == 1).all()


def _sequential_top_k(ranks: list[float], capacity: int) -> dict[int, float]:
    """The reference: items arriving one by one into a min-heap, as the class documents."""
    heap: list[tuple[float, int]] = []
    slots: dict[int, float] = {}
    for value in ranks:
        if len(heap) < capacity:
            slot = len(heap)
            heapq.heappush(heap, (value, slot))
        elif value > heap[0][0]:
            _, slot = heapq.heappop(heap)
            heapq.heappush(heap, (value, slot))
        else:
            continue
        slots[slot] = value
    return slots


@pytest.mark.parametrize("seed", range(5))
def test_max_value_writer_keeps_the_top_k_like_one_by_one_arrivals(seed):
    gen = torch.Generator().manual_seed(seed)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(16), writer=TensorDictMaxValueWriter(rank_key="score"))
    arrivals = []
    for _ in range(6):
        score = torch.randint(0, 30, (11,), generator=gen).float()  # many ties
        arrivals += score.tolist()
        rb.extend(TensorDict({"score": score}, [11]))
    expected = _sequential_top_k(arrivals, 16)
    stored = rb.storage.get(torch.arange(len(rb)))["score"]
    assert sorted(stored.tolist()) == sorted(expected.values())
    assert len(rb) == 16


def test_max_value_writer_indices_and_reduction():
    writer = TensorDictMaxValueWriter(rank_key=("next", "reward"), reduction="sum")
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(2), writer=writer)
    data = TensorDict({"next": {"reward": torch.tensor([[1.0, 1.0], [5.0, 0.0], [0.0, 0.0]])}}, [3])
    assert rb.extend(data).tolist() == [0, 1, -1]
    assert data["index"].tolist() == [0, 1, -1]
    better = TensorDict({"next": {"reward": torch.tensor([[3.0, 3.0]])}}, [1])
    assert rb.extend(better).tolist() == [0]  # evicts the item ranked 2.0
    assert rb.add(TensorDict({"next": {"reward": torch.tensor([0.5, 0.5])}}, [])) == -1


def test_max_value_writer_errors():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), writer=TensorDictMaxValueWriter(rank_key="score"))
    with pytest.raises(KeyError, match="rank key 'score' not found"):
        rb.extend(TensorDict({"other": torch.zeros(2)}, [2]))
    with pytest.raises(ValueError, match="NaN"):
        rb.extend(TensorDict({"score": torch.tensor([1.0, float("nan")])}, [2]))
    rb.extend(TensorDict({"score": torch.tensor([1.0, 2.0])}, [2]))
    with pytest.raises(KeyError, match="unexpected keys"):
        rb.extend(TensorDict({"score": torch.tensor([0.0]), "extra": torch.zeros(1)}, [1]))
    assert len(rb) == 2
    with pytest.raises(ValueError, match="finite max_size"):
        TensorDictReplayBuffer(storage=ListStorage(), writer=TensorDictMaxValueWriter())
    with pytest.raises(ValueError, match="reduction"):
        TensorDictMaxValueWriter(reduction="avg")


def test_max_value_writer_matches_torchrl():
    pytest.importorskip("torchrl")
    from torchrl.data.replay_buffers import LazyTensorStorage as TLTS
    from torchrl.data.replay_buffers import TensorDictMaxValueWriter as TMVW
    from torchrl.data.replay_buffers import TensorDictReplayBuffer as TTDRB

    gen = torch.Generator().manual_seed(0)
    ours = TensorDictReplayBuffer(storage=LazyTensorStorage(10), writer=TensorDictMaxValueWriter(rank_key="score"))
    theirs = TTDRB(storage=TLTS(10), writer=TMVW(rank_key="score"))
    for _ in range(5):
        data = TensorDict({"score": torch.rand(7, generator=gen), "obs": torch.randn(7, 2, generator=gen)}, [7])
        ours.extend(data.clone())
        theirs.extend(data.clone())
    mine = ours.storage.get(torch.arange(10))
    ref = theirs.storage[:10]
    assert sorted(mine["score"].tolist()) == sorted(ref["score"].tolist())
