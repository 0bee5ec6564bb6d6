"""DedupNextStorage: each observation stored once, and every read exactly what a plain storage gives.

The property tests (hypothesis, derandomized) feed one stream of env-like transitions to two
buffers, one on a plain storage and one on a ``DedupNextStorage`` around the same kind of
storage, and compare, bit for bit, every stored item after every write and the batches both
samplers draw with the same seed. The streams vary episode lengths, terminations and
truncations (the final next observation is not the next item's observation), several envs
written env-major (a collector batch ``[n_envs, T]`` flattened) or time-major (interleaved),
capacities small enough for the circular writer to wrap, observations that repeat or differ
only in their bits (``-0.0``, NaN), writes at scattered positions that overwrite an item's
successor and not the item, and uniform, prioritized, slice and epoch samplers.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict, TensorDictBase

from tdrl.data.replay_buffers import (
    DedupNextStorage,
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    TensorDictMaxValueWriter,
    TensorDictReplayBuffer,
)

_SETTINGS = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
_TRAJ = ("collector", "traj_ids")
# float32 values whose bits differ where == does not tell them apart, and values that repeat
_BITS_POOL = torch.tensor([0.0, -0.0, float("nan"), float("inf"), 1.0, 2.0])


# ------------------------------------------------------------------------------ helpers
def assert_same(first: TensorDictBase, second: TensorDictBase) -> None:
    """Same keys, shapes, dtypes and bits (NaN equals NaN, -0.0 differs from 0.0)."""
    assert first.batch_size == second.batch_size
    keys = set(first.keys(include_nested=True, leaves_only=True))
    assert keys == set(second.keys(include_nested=True, leaves_only=True))
    for key in keys:
        a, b = first.get(key), second.get(key)
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        if a.is_floating_point():
            as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]  # bits, not values
            a, b = a.view(as_int), b.view(as_int)
        assert torch.equal(a, b), key


class EnvStream:
    """Deterministic env-like transitions of ``n_envs`` envs: episodes end by termination or
    truncation with probability ``p_end`` per step, and the next episode starts from a fresh
    (reset) observation. ``values`` picks observations: ``"unique"`` (a counter), ``"few"``
    (0, 1 or 2: repeats within and across episodes), ``"bits"`` (0.0, -0.0, NaN, inf, ...),
    ``"bfloat16"`` (the same values in a dtype numpy lacks), ``"pixels"`` (uint8 images of a
    few values)."""

    def __init__(self, n_envs: int, p_end: float, values: str, seed: int) -> None:
        self.n_envs, self.p_end, self.values = n_envs, p_end, values
        self.gen = torch.Generator().manual_seed(seed)
        self.counter = 0
        self.next_traj = n_envs
        self.traj = list(range(n_envs))
        self.obs = [self._draw() for _ in range(n_envs)]

    def _draw(self) -> torch.Tensor:
        self.counter += 1
        if self.values == "unique":
            return torch.full((2,), float(self.counter))
        if self.values == "few":
            return torch.randint(0, 3, (2,), generator=self.gen).float()
        if self.values in ("bits", "bfloat16"):
            value = _BITS_POOL[torch.randint(0, len(_BITS_POOL), (2,), generator=self.gen)]
            return value if self.values == "bits" else value.to(torch.bfloat16)  # no numpy dtype: torch's paths
        return torch.randint(0, 3, (1, 2, 2), generator=self.gen, dtype=torch.uint8)

    def batch(self, steps: int) -> TensorDict:
        """``[n_envs, steps]`` transitions, as a collector returns them."""
        rows = []
        for env in range(self.n_envs):
            row = []
            for _ in range(steps):
                nxt = self._draw()
                roll = float(torch.rand((), generator=self.gen))
                terminated, truncated = roll < self.p_end / 2, self.p_end / 2 <= roll < self.p_end
                row.append((self.obs[env], nxt, terminated, truncated, self.traj[env]))
                if terminated or truncated:
                    self.obs[env] = self._draw()
                    self.traj[env] = self.next_traj
                    self.next_traj += 1
                else:
                    self.obs[env] = nxt
            rows.append(row)
        shape = [self.n_envs, steps]

        def stack(i: int, dtype: torch.dtype | None = None) -> torch.Tensor:
            values = [torch.as_tensor(step[i], dtype=dtype) for row in rows for step in row]
            out = torch.stack(values)
            return out.reshape(*shape, *out.shape[1:])

        terminated = stack(2, torch.bool).unsqueeze(-1)
        truncated = stack(3, torch.bool).unsqueeze(-1)
        return TensorDict(
            {
                "observation": stack(0),
                "action": torch.randn(*shape, 1, generator=self.gen),
                "collector": {"traj_ids": stack(4, torch.long)},
                "next": {
                    "observation": stack(1),
                    "reward": torch.randn(*shape, 1, generator=self.gen),
                    "done": terminated | truncated,
                    "terminated": terminated,
                    "truncated": truncated,
                },
            },
            shape,
        )


def flatten(batch: TensorDict, order: str) -> TensorDict:
    """A collector batch as stored: env after env (``"env"``) or step after step (``"time"``)."""
    return batch.reshape(-1) if order == "env" else batch.transpose(0, 1).reshape(-1)


def make_sampler(kind: str, max_size: int):
    if kind == "random":
        return RandomSampler()
    if kind == "prioritized":
        return PrioritizedSampler(max_size, alpha=0.8, beta=0.5)
    if kind == "slice":
        return SliceSampler(slice_len=2, traj_key=_TRAJ, strict_length=False)
    return SamplerWithoutReplacement()


def twin_buffers(max_size: int, sampler: str, memmap: bool = False, tmp_path=None):
    def storage(name: str):
        if memmap:
            return LazyMemmapStorage(max_size, scratch_dir=None if tmp_path is None else tmp_path / name)
        return LazyTensorStorage(max_size)

    plain = TensorDictReplayBuffer(
        storage=storage("plain"),
        sampler=make_sampler(sampler, max_size),
        generator=torch.Generator().manual_seed(7),
    )
    dedup = TensorDictReplayBuffer(
        storage=DedupNextStorage(storage("dedup")),
        sampler=make_sampler(sampler, max_size),
        generator=torch.Generator().manual_seed(7),
    )
    return plain, dedup


def assert_buffers_agree(plain: ReplayBuffer, dedup: ReplayBuffer, sampler: str, draws: int = 3) -> None:
    count = len(plain)
    assert len(dedup) == count
    assert_same(plain.storage.get(torch.arange(count)), dedup.storage.get(torch.arange(count)))
    assert_same(plain[count - 1], dedup[count - 1])
    for _ in range(draws):
        batch = 4
        a, b = plain.sample(batch), dedup.sample(batch)
        assert_same(a, b)
        if sampler == "prioritized":
            priority = torch.rand(batch) + 0.1
            plain.update_priority(a["index"], priority)
            dedup.update_priority(b["index"], priority)


# ------------------------------------------------------------------------------ properties
@settings(max_examples=150, **_SETTINGS)
@given(
    max_size=st.integers(1, 24),
    n_envs=st.integers(1, 3),
    order=st.sampled_from(["env", "time"]),
    steps=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    p_end=st.sampled_from([0.0, 0.15, 0.5, 1.0]),
    values=st.sampled_from(["unique", "few", "bits", "bfloat16", "pixels"]),
    sampler=st.sampled_from(["random", "prioritized", "slice", "without"]),
    seed=st.integers(0, 2**16),
)
def test_samples_are_exactly_those_of_a_plain_storage(max_size, n_envs, order, steps, p_end, values, sampler, seed):
    stream = EnvStream(n_envs, p_end, values, seed)
    plain, dedup = twin_buffers(max_size, sampler)
    for length in steps:
        data = flatten(stream.batch(length), order)
        plain.extend(data.clone())
        dedup.extend(data.clone())
        assert_buffers_agree(plain, dedup, sampler)


@settings(max_examples=80, **_SETTINGS)
@given(
    max_size=st.integers(2, 16),
    writes=st.lists(st.tuples(st.booleans(), st.integers(1, 8), st.integers(0, 2**16)), min_size=1, max_size=8),
    values=st.sampled_from(["unique", "few", "bits", "bfloat16"]),
    seed=st.integers(0, 2**16),
)
def test_scattered_writes_never_leave_a_stale_next_observation(max_size, writes, values, seed):
    # writes at arbitrary stored positions overwrite an item's successor and not the item:
    # the item must still read its own next observation
    stream = EnvStream(1, 0.2, values, seed)
    plain, dedup = LazyTensorStorage(max_size), DedupNextStorage(LazyTensorStorage(max_size))
    data = flatten(stream.batch(max_size), "env")
    plain.set(slice(0, max_size), data.clone())
    dedup.set(slice(0, max_size), data.clone())
    for scattered, count, draw in writes:
        data = flatten(stream.batch(count), "env")
        gen = torch.Generator().manual_seed(draw)
        if scattered:
            count = min(count, max_size)
            index = torch.randperm(max_size, generator=gen)[:count]
        else:  # a run through consecutive slots from a random start, wrapping
            start = int(torch.randint(0, max_size, (), generator=gen))
            count = min(count, max_size)
            index = (torch.arange(count) + start) % max_size
        plain.set(index, data[:count].clone())
        dedup.set(index, data[:count].clone())
        assert_same(plain.get(torch.arange(max_size)), dedup.get(torch.arange(max_size)))


@settings(max_examples=12, **_SETTINGS)
@given(
    max_size=st.integers(1, 20),
    n_envs=st.integers(1, 3),
    order=st.sampled_from(["env", "time"]),
    steps=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_memory_mapped_storages_agree_too(tmp_path_factory, max_size, n_envs, order, steps, seed):
    stream = EnvStream(n_envs, 0.2, "pixels", seed)
    plain, dedup = twin_buffers(max_size, "random", memmap=True, tmp_path=tmp_path_factory.mktemp("memmap"))
    for length in steps:
        data = flatten(stream.batch(length), order)
        plain.extend(data.clone())
        dedup.extend(data.clone())
        assert_buffers_agree(plain, dedup, "random")


# ------------------------------------------------------------------------------ memory
def test_contiguous_trajectories_keep_one_next_observation_per_end():
    stream = EnvStream(1, 0.0, "unique", 0)
    storage = DedupNextStorage(LazyTensorStorage(1000))
    rb = ReplayBuffer(storage=storage)
    for _ in range(10):  # one episode written 50 steps at a time
        rb.extend(flatten(stream.batch(50), "env"))
    assert len(rb) == 500
    assert storage.kept_next == 1  # the newest step only: each write links to the one before
    for _ in range(10):  # add() one step at a time links the same way
        rb.add(flatten(stream.batch(1), "env")[0])
    assert storage.kept_next == 1
    stored = storage.storage.layout
    assert ("next", "observation") not in stored  # the wrapped storage holds no next observation


def test_episode_ends_and_env_segments_keep_theirs():
    stream = EnvStream(4, 0.0, "unique", 0)
    storage = DedupNextStorage(LazyTensorStorage(1000))
    storage.set(slice(0, 40), flatten(stream.batch(10), "env"))
    assert storage.kept_next == 4  # the last step of each env's segment
    interleaved = DedupNextStorage(LazyTensorStorage(1000))
    interleaved.set(slice(0, 40), flatten(stream.batch(10), "time"))
    assert interleaved.kept_next == 40  # no item is followed by its successor: nothing shared


def test_a_truncated_episode_keeps_its_final_observation():
    obs = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])  # episode 0: 0 1 2 -> 3 (truncated); episode 1
    nxt = torch.tensor([[1.0], [2.0], [3.0], [11.0], [12.0]])
    truncated = torch.tensor([[False], [False], [True], [False], [False]])
    data = TensorDict({"observation": obs, "next": {"observation": nxt, "truncated": truncated}}, [5])
    storage = DedupNextStorage(LazyTensorStorage(5))
    storage.set(slice(0, 5), data)
    assert storage.get(2)["next", "observation"].item() == 3.0  # not the reset observation 10
    assert storage.kept_next == 2


# ------------------------------------------------------------------------------ other components
def test_max_value_writer_and_slice_sampler_with_frame_stacking_agree():
    from tdrl.envs.transforms import CatFrames

    stream = EnvStream(2, 0.2, "pixels", 3)
    buffers = []
    for wrap in (False, True):
        storage = LazyTensorStorage(12)
        rb = ReplayBuffer(
            storage=DedupNextStorage(storage) if wrap else storage,
            sampler=SliceSampler(slice_len=3, traj_key=_TRAJ, strict_length=False),
            transform=CatFrames(N=3, dim=-3, in_keys=["observation"]),
            generator=torch.Generator().manual_seed(1),
        )
        buffers.append(rb)
    for _ in range(5):
        data = flatten(stream.batch(5), "env")
        for rb in buffers:
            rb.extend(data.clone())
        assert_same(buffers[0].sample(6), buffers[1].sample(6))

    ranked = []
    for wrap in (False, True):
        storage = LazyTensorStorage(6)
        writer = TensorDictMaxValueWriter(rank_key=("next", "reward"))
        ranked.append(ReplayBuffer(storage=DedupNextStorage(storage) if wrap else storage, writer=writer))
    for _ in range(6):
        data = flatten(stream.batch(4), "env")
        for rb in ranked:
            rb.extend(data.clone())
        assert_same(ranked[0][torch.arange(len(ranked[0]))], ranked[1][torch.arange(len(ranked[1]))])


def test_nested_and_several_keys():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 255, (9, 3, 4, 4), generator=gen, dtype=torch.uint8)
    state = torch.randn(9, 2, generator=gen)
    data = TensorDict(
        {
            "pixels": frames[:-1],
            "agents": {"state": state[:-1]},
            "next": {"pixels": frames[1:], "agents": {"state": state[1:]}, "reward": torch.ones(8, 1)},
        },
        [8],
    )
    plain, dedup = LazyTensorStorage(8), DedupNextStorage(LazyTensorStorage(8), keys=["pixels", ("agents", "state")])
    plain.set(slice(0, 8), data.clone())
    dedup.set(slice(0, 8), data.clone())
    assert dedup.keys == ("pixels", ("agents", "state"))
    assert dedup.kept_next == 1
    assert_same(plain.get(torch.arange(8)), dedup.get(torch.arange(8)))
    assert torch.equal(dedup._leaf(("next", "pixels")), frames[1:])  # the column a sampler may read


def test_default_keys_are_found_from_the_data():
    data = flatten(EnvStream(1, 0.0, "pixels", 0).batch(4), "env")
    data.rename_key_("observation", "pixels")
    data.rename_key_(("next", "observation"), ("next", "pixels"))
    storage = DedupNextStorage(LazyTensorStorage(4))
    storage.set(slice(0, 4), data)
    assert storage.keys == ("pixels",)


# ------------------------------------------------------------------------------ checkpoints
def _filled(max_size: int = 16, steps=(7, 5, 9)) -> tuple[TensorDictReplayBuffer, TensorDictReplayBuffer]:
    stream = EnvStream(2, 0.2, "few", 5)
    plain, dedup = twin_buffers(max_size, "prioritized")
    for length in steps:
        data = flatten(stream.batch(length), "env")
        plain.extend(data.clone())
        dedup.extend(data.clone())
    return plain, dedup


@pytest.mark.parametrize("kind", ["tensor", "memmap"])
def test_dumps_and_loads_round_trip(tmp_path, kind):
    stream = EnvStream(2, 0.2, "few", 5)
    inner = LazyTensorStorage(16) if kind == "tensor" else LazyMemmapStorage(16, scratch_dir=tmp_path / "a")
    source = TensorDictReplayBuffer(storage=DedupNextStorage(inner), generator=torch.Generator().manual_seed(3))
    for length in (7, 5, 9):
        source.extend(flatten(stream.batch(length), "env"))
    source.dumps(tmp_path / "ckpt")
    inner = LazyTensorStorage(16) if kind == "tensor" else LazyMemmapStorage(16, scratch_dir=tmp_path / "b")
    restored = TensorDictReplayBuffer(storage=DedupNextStorage(inner), generator=torch.Generator().manual_seed(3))
    restored.loads(tmp_path / "ckpt")
    assert restored.storage.kept_next == source.storage.kept_next
    assert_same(source[torch.arange(16)], restored[torch.arange(16)])
    assert_same(source.sample(8), restored.sample(8))
    more = flatten(stream.batch(6), "env")  # both go on writing alike
    source.extend(more.clone())
    restored.extend(more.clone())
    assert_same(source[torch.arange(16)], restored[torch.arange(16)])


def test_state_dict_loads_into_a_buffer_that_holds_other_data():
    plain, dedup = _filled()
    _, other = _filled(steps=(3,))
    other.load_state_dict(dedup.state_dict())
    assert_same(dedup[torch.arange(16)], other[torch.arange(16)])
    assert_same(plain[torch.arange(16)], other[torch.arange(16)])


def test_a_checkpoint_of_other_keys_or_a_damaged_one_is_refused_unchanged():
    _, dedup = _filled()
    state = dedup.state_dict()
    _, target = _filled(steps=(4,))
    before = target[torch.arange(len(target))]
    renamed = DedupNextStorage(LazyTensorStorage(16), keys=["pixels"])
    with pytest.raises(ValueError, match="build the storage with the checkpoint's keys="):
        renamed.load_state_dict(state["storage"])
    broken = {**state["storage"], "link": state["storage"]["link"].clone()}
    broken["link"][broken["link"] >= 0] = 0  # two items claim the same kept value
    with pytest.raises(ValueError, match=r"storage\.link"):
        target.load_state_dict({**state, "storage": broken})
    short = {**state["storage"], "kept": [v[:-1] for v in state["storage"]["kept"]]}
    with pytest.raises(ValueError, match=r"storage\.kept\[0\]"):
        target.load_state_dict({**state, "storage": short})
    assert_same(before, target[torch.arange(len(target))])


def test_a_plain_storage_checkpoint_is_refused():
    plain, dedup = _filled()
    with pytest.raises(ValueError, match="holds a LazyTensorStorage state"):
        dedup.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("kind", ["tensor", "memmap"])
def test_pickle_round_trip(kind):
    inner = LazyTensorStorage(8) if kind == "tensor" else LazyMemmapStorage(8)
    storage = DedupNextStorage(inner)
    stream = EnvStream(1, 0.3, "unique", 1)
    storage.set(slice(0, 6), flatten(stream.batch(6), "env"))
    copy = pickle.loads(pickle.dumps(storage))
    assert_same(storage.get(torch.arange(6)), copy.get(torch.arange(6)))
    more = flatten(stream.batch(300), "env")[:8]  # enough to grow both kept stores
    storage.set(torch.arange(6, 14) % 8, more.clone())
    copy.set(torch.arange(6, 14) % 8, more.clone())
    assert_same(storage.get(torch.arange(8)), copy.get(torch.arange(8)))


def test_empty_forgets_everything():
    _, dedup = _filled()
    dedup.empty()
    assert len(dedup) == 0
    assert dedup.storage.kept_next == 0
    stream = EnvStream(1, 0.0, "unique", 9)
    dedup.extend(flatten(stream.batch(5), "env"))
    assert dedup.storage.kept_next == 1
    assert torch.equal(dedup[torch.arange(4)]["next", "observation"], dedup[torch.arange(1, 5)]["observation"])


# ------------------------------------------------------------------------------ errors
def test_only_an_empty_lazy_tensor_storage_is_wrapped():
    with pytest.raises(TypeError, match=r"got ListStorage; pass e\.g\. DedupNextStorage\(LazyTensorStorage"):
        DedupNextStorage(ListStorage(10))
    full = LazyTensorStorage(10)
    full.set(slice(0, 2), TensorDict({"observation": torch.zeros(2)}, [2]))
    with pytest.raises(TypeError, match="already holds data"):
        DedupNextStorage(full)
    with pytest.raises(ValueError, match="lists an entry twice"):
        DedupNextStorage(LazyTensorStorage(10), keys=["observation", "observation"])
    with pytest.raises(ValueError, match=r"root entries"):
        DedupNextStorage(LazyTensorStorage(10), keys=[("next", "observation")])


def test_data_without_the_pair_is_refused_naming_the_keys():
    storage = DedupNextStorage(LazyTensorStorage(10))
    with pytest.raises(KeyError, match=r"found none of \['observation', 'pixels'\].*holds keys \['obs'\]"):
        storage.set(slice(0, 2), TensorDict({"obs": torch.zeros(2)}, [2]))
    storage = DedupNextStorage(LazyTensorStorage(10), keys="state")
    with pytest.raises(KeyError, match=r"lacks \('next', 'state'\)"):
        storage.set(slice(0, 2), TensorDict({"state": torch.zeros(2)}, [2]))
    with pytest.raises(ValueError, match=r"one shape and dtype: got \[2\] torch.float32 and \[2\] torch.float64"):
        storage.set(
            slice(0, 2),
            TensorDict({"state": torch.zeros(2), "next": {"state": torch.zeros(2, dtype=torch.float64)}}, [2]),
        )
    assert len(storage) == 0
    assert storage.layout is None


def test_bad_writes_change_nothing():
    storage = DedupNextStorage(LazyTensorStorage(10))
    data = flatten(EnvStream(1, 0.0, "unique", 0).batch(4), "env")
    storage.set(slice(0, 4), data.clone())
    before = storage.get(torch.arange(4))
    with pytest.raises(ValueError, match=r"batch_size \[N\].*data\.reshape\(-1\)"):
        storage.set(slice(4, 6), data[:2].clone().reshape(1, 2))
    with pytest.raises(ValueError, match="repeated positions"):
        storage.set(torch.tensor([5, 1, 5]), data[:3].clone())
    with pytest.raises(ValueError, match="use extend"):
        storage.set(4, data[:2].clone())
    wrong = data.clone()
    wrong["action"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="entry 'action' has shape"):
        storage.set(slice(2, 6), wrong)  # refused after item 1 copied its next observation aside
    huge = data.clone()
    huge["observation"] = huge["observation"].double()  # castable, but its twin differs
    with pytest.raises(ValueError, match="one shape and dtype"):
        storage.set(slice(4, 8), huge)
    assert len(storage) == 4
    assert_same(before, storage.get(torch.arange(4)))


def test_reading_an_unwritten_position_raises():
    storage = DedupNextStorage(LazyTensorStorage(10))
    storage.set(slice(0, 3), flatten(EnvStream(1, 0.0, "unique", 0).batch(3), "env"))
    with pytest.raises(IndexError, match="position 7 holds no item"):
        storage.get(torch.tensor([0, 7]))
    with pytest.raises(IndexError, match="out of range"):
        storage.get(3)


def test_a_write_that_fails_after_the_items_were_stored_leaves_them_refused_not_stale(monkeypatch):
    storage = DedupNextStorage(LazyTensorStorage(10))
    stream = EnvStream(1, 0.0, "unique", 0)
    storage.set(slice(0, 4), flatten(stream.batch(4), "env"))

    def failing(self, slots, values):
        raise OSError("disk full")

    monkeypatch.setattr(type(storage._kept), "write", failing)
    with pytest.raises(OSError, match="disk full"):
        storage.set(slice(4, 8), flatten(stream.batch(4), "env"))
    monkeypatch.undo()
    with pytest.raises(IndexError, match="holds no item"):
        storage.get(torch.tensor([5]))
    assert storage.get(torch.arange(3))["next", "observation"].shape == (3, 2)  # the earlier items still read


def test_bitwise_comparison_tells_negative_zero_and_nan_apart():
    obs = torch.tensor([[1.0], [-0.0], [float("nan")], [5.0]])
    nxt = torch.tensor([[0.0], [float("nan")], [float("nan")], [2.0]])
    storage = DedupNextStorage(LazyTensorStorage(4))
    storage.set(slice(0, 4), TensorDict({"observation": obs, "next": {"observation": nxt}}, [4]))
    out = storage.get(torch.arange(4))["next", "observation"]
    assert np.array_equal(out.view(torch.int32).numpy(), nxt.view(torch.int32).numpy())
    # item 0 keeps its 0.0 (the following slot holds -0.0, which == would take for it); item 1
    # shares its NaN with item 2 (which == would refuse); items 2 and 3 keep theirs
    assert storage.kept_next == 3


@pytest.mark.parametrize("kind", ["tensor", "memmap"])
def test_kept_rows_grow_as_needed(tmp_path, kind):
    # interleaved envs share nothing: every item keeps its next observation, 256 -> 512 -> 1000 rows
    stream = EnvStream(4, 0.1, "unique", 2)
    plain = LazyTensorStorage(1000)
    inner = LazyTensorStorage(1000) if kind == "tensor" else LazyMemmapStorage(1000, scratch_dir=tmp_path)
    dedup = DedupNextStorage(inner)
    cursor = 0
    for _ in range(7):
        data = flatten(stream.batch(50), "time")
        index = (torch.arange(200) + cursor) % 1000
        plain.set(index, data.clone())
        dedup.set(index, data.clone())
        cursor += 200
    assert dedup.kept_next == 1000
    assert_same(plain.get(torch.arange(1000)), dedup.get(torch.arange(1000)))
    if kind == "memmap":  # the kept rows live beside the items, and only the newest columns remain
        assert sorted(p.name for p in tmp_path.glob("next_kept_*")) == ["next_kept_1000"]


def test_reopening_the_folder_gives_the_items_without_their_deduplicated_next(tmp_path):
    data = flatten(EnvStream(1, 0.2, "unique", 4).batch(10), "env")
    storage = DedupNextStorage(LazyMemmapStorage(16, scratch_dir=tmp_path))
    storage.set(slice(0, 10), data.clone())
    reopened = LazyMemmapStorage.open(tmp_path)  # as after a crash: the links were in memory
    items = reopened.get(torch.arange(10))
    assert ("next", "observation") not in items.keys(include_nested=True)
    assert_same(items, data.exclude(("next", "observation")))
