"""Samplers: uniform, without replacement, prioritized (frequencies and weights), slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    SliceSamplerWithoutReplacement,
    TensorDictReplayBuffer,
)
from tdrl.data.replay_buffers._segment_tree import SumMinTree

# chi2.ppf(0.999, dof) for the goodness-of-fit tests below
_CHI2_999 = {49: 85.351, 19: 43.820}


def _filled(n: int, make, max_size: int | None = None, **kwargs) -> ReplayBuffer:
    rb = ReplayBuffer(storage=LazyTensorStorage(max_size or n), **kwargs)
    rb.extend(make(n))
    return rb


# --------------------------------------------------------------------- uniform
def test_random_sampler_covers_the_stored_items_uniformly(make_transitions):
    rb = _filled(20, make_transitions, max_size=100, sampler=RandomSampler())
    steps = torch.cat([rb.sample(500)["observation"][:, 0] for _ in range(40)]).long()
    counts = torch.bincount(steps, minlength=20).double()
    assert steps.max() < 20
    expected = counts.sum() / 20
    assert ((counts - expected) ** 2 / expected).sum() < _CHI2_999[19]


def test_sampling_an_empty_buffer_raises():
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        rb.sample(4)


def test_generator_makes_sampling_reproducible(make_transitions):
    def draw():
        rb = _filled(100, make_transitions, generator=torch.Generator().manual_seed(3))
        return rb.sample(16)["observation"]

    assert torch.equal(draw(), draw())


# --------------------------------------------------------------- without replacement
@pytest.mark.parametrize("batch_size", [64, 100, 7])
def test_without_replacement_yields_each_index_once_per_epoch(make_transitions, batch_size):
    rb = _filled(100, make_transitions, sampler=SamplerWithoutReplacement(), batch_size=batch_size)
    for _ in range(3):
        seen = torch.cat([batch["observation"][:, 0] for batch in rb]).long()
        assert sorted(seen.tolist()) == list(range(100))


def test_without_replacement_drop_last(make_transitions):
    rb = _filled(10, make_transitions, sampler=SamplerWithoutReplacement(drop_last=True), batch_size=4)
    sizes = [len(batch) for batch in rb]
    assert sizes == [4, 4]
    with pytest.raises(ValueError, match="drop_last=True"):
        rb.sampler.sample(rb.storage, 11)


def test_without_replacement_no_shuffle_walks_in_order(make_transitions):
    rb = _filled(6, make_transitions, sampler=SamplerWithoutReplacement(shuffle=False), batch_size=4)
    assert [b["observation"][:, 0].tolist() for b in rb] == [[0, 1, 2, 3], [4, 5]]


def test_without_replacement_restarts_when_the_length_changes(make_transitions):
    rb = _filled(10, make_transitions, max_size=20, sampler=SamplerWithoutReplacement(), batch_size=4)
    rb.sample()
    rb.extend(make_transitions(5, start=10))
    seen = torch.cat([b["observation"][:, 0] for b in rb]).long()
    assert sorted(seen.tolist()) == list(range(15))


def test_without_replacement_matches_torchrl_under_the_same_seed(make_transitions):
    torchrl = pytest.importorskip("torchrl")
    from torchrl.data.replay_buffers import ReplayBuffer as TRB
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement as TSWR
    from torchrl.data.replay_buffers.storages import LazyTensorStorage as TLTS

    data = make_transitions(1000)
    ours = ReplayBuffer(storage=LazyTensorStorage(1000), sampler=SamplerWithoutReplacement())
    theirs = TRB(storage=TLTS(1000), sampler=TSWR())
    torch.manual_seed(1)
    ours.extend(data)
    mine = [ours.sample(64)["observation"] for _ in range(40)]
    torch.manual_seed(1)
    theirs.extend(data)
    ref = [theirs.sample(64)["observation"] for _ in range(40)]
    assert all(torch.equal(a, b) for a, b in zip(mine, ref))
    assert torchrl is not None


def test_random_sampler_matches_torchrl_under_the_same_seed(make_transitions):
    pytest.importorskip("torchrl")
    from torchrl.data.replay_buffers import ReplayBuffer as TRB
    from torchrl.data.replay_buffers.storages import LazyTensorStorage as TLTS

    data = make_transitions(500)
    ours, theirs = ReplayBuffer(storage=LazyTensorStorage(600)), TRB(storage=TLTS(600))
    ours.extend(data)
    theirs.extend(data)
    torch.manual_seed(5)
    mine = ours.sample(256)
    torch.manual_seed(5)
    ref = theirs.sample(256)
    for key in ("observation", "action", ("next", "reward"), ("next", "done")):
        assert torch.equal(mine[key], ref[key])


# ------------------------------------------------------------------- segment tree
def test_sum_min_tree_matches_numpy():
    rng = np.random.default_rng(0)
    tree = SumMinTree(1000)
    values = np.zeros(1000)
    for _ in range(20):
        index = rng.integers(0, 1000, 64)
        update = rng.random(64) * (rng.random(64) > 0.2)
        tree.update(index, update)
        for i, v in zip(index, update):  # the last write to a slot wins
            values[i] = v
        assert tree.total() == pytest.approx(values.sum(), rel=1e-12)
        assert tree.min() == values[values > 0].min()
    cumulative = np.cumsum(values)
    fraction = rng.random(500)
    expected = np.searchsorted(cumulative, fraction * values.sum(), side="right")
    assert (tree.find(fraction) == expected).all()
    rebuilt = SumMinTree(1000)
    rebuilt.assign(values)
    assert rebuilt.total() == pytest.approx(tree.total(), rel=1e-12)
    assert rebuilt.min() == tree.min()


@pytest.mark.parametrize("capacity", [10, 100_000])
def test_tree_never_returns_an_empty_slot(capacity):
    tree = SumMinTree(capacity)
    tree.update(np.array([0, 1, capacity - 1]), np.array([1.0, 2.0, 0.0]))
    found = tree.find(np.array([0.0, 0.5, 1 - 1e-16, 1.0]))  # the end rounds back
    assert set(found.tolist()) <= {0, 1}
    tree.update(np.array([0, 1]), np.array([0.0, 0.0]))
    with pytest.raises(RuntimeError, match="every priority is zero"):
        tree.find(np.array([0.5]))


def test_large_tree_matches_numpy():
    rng = np.random.default_rng(1)
    tree = SumMinTree(1_000_000)
    values = rng.random(1_000_000) * (rng.random(1_000_000) > 0.5)
    tree.assign(values)
    index = rng.integers(0, 1_000_000, 300)
    values[index] = rng.random(300)
    tree.update(index, values[index])
    assert tree.total() == pytest.approx(values.sum(), rel=1e-12)
    assert tree.min() == values[values > 0].min()
    fraction = rng.random(1000)
    expected = np.searchsorted(np.cumsum(values), fraction * values.sum(), side="right")
    assert (tree.find(fraction) == expected).mean() > 0.999  # rounding may move a draw at a boundary


# ------------------------------------------------------------------- prioritized
def test_prioritized_frequencies_match_priorities_to_the_alpha(make_transitions):
    n, alpha, eps = 50, 0.7, 1e-3
    rb = _filled(n, make_transitions, sampler=PrioritizedSampler(n, alpha=alpha, beta=0.5, eps=eps))
    priority = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 5
    priority[::7] = 0.0  # zero priorities still get eps
    rb.update_priority(torch.arange(n), priority)
    steps = torch.cat([rb.sample(10_000)["observation"][:, 0] for _ in range(20)]).long()
    counts = torch.bincount(steps, minlength=n).double()
    p = (priority.double() + eps) ** alpha
    expected = p / p.sum() * counts.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < _CHI2_999[n - 1], chi2


def test_prioritized_importance_weights(make_transitions):
    n, alpha, beta, eps = 30, 0.6, 0.4, 1e-6
    sampler = PrioritizedSampler(n, alpha=alpha, beta=beta, eps=eps)
    rb = _filled(n, make_transitions, sampler=sampler)
    priority = torch.linspace(0.1, 3.0, n)
    rb.update_priority(torch.arange(n), priority)
    _, info = rb.sample(200, return_info=True)
    p = (priority.double() + eps) ** alpha
    expected = (p[info["index"]] / p.min()) ** -beta
    assert torch.allclose(info["priority_weight"].double(), expected, rtol=1e-6)
    assert info["priority_weight"].dtype == torch.float32
    assert info["priority_weight"].max() <= 1.0


def test_new_items_get_the_largest_priority_seen(make_transitions):
    sampler = PrioritizedSampler(10, alpha=1.0, beta=1.0, eps=0.0)
    rb = _filled(4, make_transitions, max_size=10, sampler=sampler)
    rb.update_priority(torch.arange(4), torch.tensor([0.0, 0.0, 0.0, 9.0]))
    assert sampler.default_priority == 9.0
    rb.extend(make_transitions(1, start=4))
    assert sampler._tree.values(np.array([4]))[0] == 9.0


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (torch.tensor([1.0, -0.5, 1.0]), r"finite and >= 0, got -0.5 for index 1"),
        (torch.tensor([1.0, 1.0, float("nan")]), r"got nan for index 2"),
        (torch.tensor([float("inf"), 1.0, 1.0]), r"got inf for index 0"),
        (torch.ones(4), r"got 4 priorities"),
    ],
)
def test_bad_priorities_are_refused_and_nothing_changes(make_transitions, priority, message):
    sampler = PrioritizedSampler(10, alpha=0.5, beta=0.5)
    rb = _filled(3, make_transitions, max_size=10, sampler=sampler)
    rb.update_priority(torch.arange(3), torch.tensor([1.0, 2.0, 3.0]))
    before = sampler._tree.values().copy()
    with pytest.raises(ValueError, match=message):
        rb.update_priority(torch.arange(3), priority)
    assert (sampler._tree.values() == before).all()


def test_update_priority_out_of_range_and_skipped_indices():
    sampler = PrioritizedSampler(5, alpha=1.0, beta=1.0)
    with pytest.raises(ValueError, match="out of range"):
        sampler.update_priority(torch.tensor([5]), 1.0)
    sampler.update_priority(torch.tensor([-1, 2]), torch.tensor([4.0, 2.0]))  # -1: not stored
    assert sampler._tree.total() == pytest.approx(2.0)


def test_prioritized_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match="alpha must be"):
        PrioritizedSampler(10, alpha=-1.0, beta=0.5)
    with pytest.raises(ValueError, match="max_capacity"):
        PrioritizedSampler(0, alpha=1.0, beta=0.5)
    with pytest.raises(ValueError, match="reduction"):
        PrioritizedSampler(10, alpha=1.0, beta=0.5, reduction="avg")


def test_non_prioritized_sampler_warns_on_priorities(make_transitions):
    rb = _filled(5, make_transitions)
    with pytest.warns(UserWarning, match="does not use priorities"):
        rb.update_priority(torch.arange(2), torch.ones(2))


# ------------------------------------------------------------------------ slices
def _slice_buffer(make, n, max_size, sampler, episode_len=None, lengths=None, **kwargs):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(max_size), sampler=sampler, **kwargs)
    if lengths is None:
        rb.extend(make(n, episode_len=episode_len))
    else:  # trajectories of the given lengths, with consecutive episode ids
        start = 0
        for ep, length in enumerate(lengths):
            td = make(length, start=start)
            td["episode"] = torch.full((length,), ep)
            td["next", "done"][-1] = True
            rb.extend(td)
            start += length
    return rb


def _check_slices(batch: TensorDict, num_slices: int) -> None:
    steps = batch["observation"][:, 0].reshape(num_slices, -1)
    episodes = batch["episode"].reshape(num_slices, -1)
    assert (episodes == episodes[:, :1]).all(), "a slice crossed a trajectory boundary"
    assert (steps.diff(dim=1) == 1).all(), "a slice is not contiguous in time"


@pytest.mark.parametrize("marker", ["traj_key", "end_key", "auto"])
def test_slices_never_cross_trajectory_boundaries(make_transitions, marker):
    kwargs = (
        {"traj_key": "episode"}
        if marker == "traj_key"
        else {"end_key": ("next", "done")}
        if marker == "end_key"
        else {}
    )
    sampler = SliceSampler(num_slices=8, **kwargs)
    lengths = [3, 9, 4, 12, 5, 7, 20, 4, 6]
    rb = _slice_buffer(make_transitions, None, 100, sampler, lengths=lengths)
    for _ in range(50):
        _check_slices(rb.sample(32), 8)


def test_slices_follow_trajectories_across_the_ring_end(make_transitions):
    # 130 steps into a ring of 100: the newest items sit at the start of the storage, and
    # the episode spanning steps 120..129 starts at position 20 while 30..39 is overwritten
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=SliceSampler(slice_len=6, traj_key="episode"))
    for start in range(0, 130, 13):
        rb.extend(make_transitions(13, start=start, episode_len=10))
    for _ in range(50):
        batch = rb.sample(60)
        _check_slices(batch, 10)
    # the newest step (129) and the oldest (30) are never joined into one slice
    steps = rb.sample(600)["observation"][:, 0].reshape(100, 6)
    assert not ((steps[:, :-1] == 129) & (steps[:, 1:] == 30)).any()


def test_end_key_splits_at_the_ring_cursor(make_transitions):
    # no episode ends at all: the only boundary is between the newest and the oldest item
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(50), sampler=SliceSampler(slice_len=5, end_key=("next", "done"))
    )
    rb.extend(make_transitions(70))
    steps = rb.sample(500)["observation"][:, 0].reshape(100, 5)
    assert (steps.diff(dim=1) == 1).all()
    assert steps.min() >= 20


def test_slice_end_marks(make_transitions):
    rb = _slice_buffer(make_transitions, 40, 40, SliceSampler(slice_len=4, traj_key="episode"), episode_len=10)
    batch = rb.sample(12)
    truncated = batch["next", "truncated"].reshape(3, 4)
    assert truncated[:, -1].all()
    assert not truncated[:, :-1].any()
    done = batch["next", "done"].reshape(3, 4)
    assert done[:, -1].all()
    terminated = batch["next", "terminated"].reshape(3, 4)
    stored_terminal = (batch["observation"][:, 0].reshape(3, 4) + 1) % 10 == 0
    assert torch.equal(terminated, stored_terminal)


def test_strict_length(make_transitions):
    lengths = [2, 3, 8]
    strict = _slice_buffer(make_transitions, None, 50, SliceSampler(slice_len=5, traj_key="episode"), lengths=lengths)
    assert (strict.sample(20)["episode"] == 2).all()
    with pytest.raises(ValueError, match="at least 9 steps long"):
        SliceSampler(slice_len=9, traj_key="episode").sample(strict.storage, 18)
    loose = _slice_buffer(
        make_transitions, None, 50, SliceSampler(slice_len=5, traj_key="episode", strict_length=False), lengths=lengths
    )
    sizes = set()
    for _ in range(30):
        batch = loose.sample(10)
        sizes.add(len(batch))
        ends = batch["next", "truncated"][:, 0].nonzero().squeeze(-1) + 1
        for piece in torch.tensor_split(batch["episode"], ends[:-1].tolist()):
            assert (piece == piece[0]).all()
    assert min(sizes) < 10


def test_slice_sampler_arguments_and_errors(make_transitions):
    with pytest.raises(TypeError, match="exactly one of num_slices and slice_len"):
        SliceSampler(num_slices=2, slice_len=3)
    sampler = SliceSampler(num_slices=3, traj_key="episode")
    rb = _slice_buffer(make_transitions, 30, 30, sampler, episode_len=10)
    with pytest.raises(ValueError, match="not divisible by num_slices=3"):
        rb.sample(10)
    missing = SliceSampler(num_slices=2, traj_key="trajectory")
    with pytest.raises(KeyError, match="traj_key 'trajectory' is not in the storage"):
        missing.sample(rb.storage, 4)
    storage = ListStorage(5)
    storage.set(0, 1)
    with pytest.raises(TypeError, match="tensor storage"):
        SliceSampler(num_slices=1).sample(storage, 2)


def test_slice_sampler_without_replacement_visits_each_trajectory_once(make_transitions):
    sampler = SliceSamplerWithoutReplacement(num_slices=3, traj_key="episode")
    rb = _slice_buffer(make_transitions, 100, 100, sampler, episode_len=10, batch_size=12)
    for _ in range(2):
        batches = list(rb)
        assert [len(b) for b in batches] == [12, 12, 12, 4]
        episodes = torch.cat([batch["episode"].reshape(-1, 4)[:, 0] for batch in batches])
        assert sorted(episodes.tolist()) == list(range(10))
        for batch in batches:
            _check_slices(batch, len(batch) // 4)
