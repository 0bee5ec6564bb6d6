"""Fuzzing replay buffers (hypothesis, derandomized: the same cases every run).

- Random layouts (nested keys, dtypes, per-item shapes), storages, samplers and batch
  sizes: after any sequence of ``extend`` calls, the buffer holds exactly the newest item
  written at each position, and every sampled row is the stored row its index names.
- Checkpoints mutated at random (bytes flipped, files truncated, extended, removed or
  renamed, JSON fields changed or removed, file names altered), loaded into a buffer that
  holds other data: the load gives exactly the saved buffer, or raises a clear error
  (``ValueError`` / ``FileNotFoundError``) and leaves the buffer exactly as it was.
- The same JSON edits with the checksums recomputed (what a writer with a bug would save):
  either refused with a clear error, the buffer unchanged, or loaded into a buffer that
  samples, extends and saves without a misleading failure.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    DedupNextStorage,
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSamplerWithoutReplacement,
    TensorDictMaxValueWriter,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)

_SETTINGS = {
    "derandomize": True,
    "database": None,  # nothing to replay between runs: the cases are the same every run
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool]


# ------------------------------------------------------------------- extend / sample keep what was written
@st.composite
def layouts(draw):
    """Leaf keys (nested up to depth 2, none under another), per-item shapes, dtypes."""
    names = st.sampled_from(["obs", "action", "reward", "done", "next", "info", "x"])
    count = draw(st.integers(1, 4))
    keys: list[tuple[str, ...]] = []
    while len(keys) < count:
        key = tuple(draw(st.lists(names, min_size=1, max_size=2)))
        if all(key[: len(k)] != k and k[: len(key)] != key for k in keys):
            keys.append(key)
    shapes = [tuple(draw(st.lists(st.integers(0, 3), max_size=2))) for _ in keys]
    dtypes = [draw(st.sampled_from(_DTYPES)) for _ in keys]
    return keys, shapes, dtypes


def _data(layout, count: int, seed: int) -> TensorDict:
    keys, shapes, dtypes = layout
    gen = torch.Generator().manual_seed(seed)
    out = TensorDict({}, [count])
    for key, shape, dtype in zip(keys, shapes, dtypes):
        full = (count, *shape)
        if dtype == torch.bool:
            value = torch.rand(full, generator=gen) < 0.5
        elif dtype.is_floating_point:
            value = (torch.randn(full, generator=gen) * 100).to(dtype)
        else:
            info = torch.iinfo(dtype)
            value = torch.randint(max(info.min, -(2**20)), min(info.max, 2**20), full, generator=gen, dtype=dtype)
        out.set(key if len(key) > 1 else key[0], value)
    return out


def _same_rows(a: TensorDict, b: TensorDict) -> bool:
    return a.batch_size == b.batch_size and all(
        torch.equal(a.get(k), b.get(k)) for k in a.keys(include_nested=True, leaves_only=True)
    )


@settings(max_examples=150, **_SETTINGS)
@given(
    layout=layouts(),
    storage_kind=st.sampled_from(["tensor", "memmap", "list"]),
    sampler_kind=st.sampled_from(["random", "without_replacement", "prioritized"]),
    capacity=st.integers(1, 24),
    batches=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    sample_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_extend_and_sample_keep_what_was_written(
    layout, storage_kind, sampler_kind, capacity, batches, sample_sizes, seed
):
    with tempfile.TemporaryDirectory() as scratch:
        storage = {
            "tensor": lambda: LazyTensorStorage(capacity),
            "memmap": lambda: LazyMemmapStorage(capacity, scratch_dir=Path(scratch) / "s"),
            "list": lambda: ListStorage(capacity),
        }[storage_kind]()
        sampler = {
            "random": RandomSampler,
            "without_replacement": SamplerWithoutReplacement,
            "prioritized": lambda: PrioritizedSampler(capacity, alpha=0.7, beta=0.5),
        }[sampler_kind]()
        rb = ReplayBuffer(storage=storage, sampler=sampler)
        expected: dict[int, TensorDict] = {}  # position -> the item written there last
        written = 0
        for i, count in enumerate(batches):
            data = _data(layout, count, seed + i)
            rb.extend(data)
            for j in range(count):
                expected[(written + j) % capacity] = data[j]
            written += count
        assert len(rb) == len(expected) == min(written, capacity)
        stored = rb[list(range(len(rb)))]
        assert _same_rows(stored, torch.stack([expected[p] for p in range(len(rb))]))
        event(f"storage {storage_kind}, sampler {sampler_kind}, wraps: {written > capacity}")
        for size in sample_sizes:
            batch, info = rb.sample(size, return_info=True)
            index = info["index"]
            assert bool(((index >= 0) & (index < len(rb))).all())
            assert _same_rows(batch, torch.stack([expected[int(p)] for p in index]))


# ------------------------------------------------------------------------------ mutated checkpoints
def _transitions(count: int, seed: int) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "obs": torch.randn(count, 3, generator=gen),
            "action": torch.randint(0, 4, (count,), generator=gen),
            "episode": torch.arange(count) // 5 + seed * 100,
            "next": {"reward": torch.randn(count, 1, generator=gen), "done": torch.rand(count, 1, generator=gen) < 0.2},
        },
        [count],
    )


def _buffer(kind: str, scratch: Path, seed: int):
    """A buffer of ``kind`` holding data and sampler state that depend on ``seed``."""
    if kind == "without_replacement":
        rb = TensorDictReplayBuffer(
            storage=LazyTensorStorage(40),
            sampler=SamplerWithoutReplacement(),
            batch_size=6,
            generator=torch.Generator().manual_seed(seed),
        )
        rb.extend(_transitions(50, seed))
        rb.sample()
    elif kind == "prioritized":
        rb = TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(40), batch_size=6)
        rb.extend(_transitions(30, seed))
        rb.update_priority(torch.arange(30), torch.rand(30, generator=torch.Generator().manual_seed(seed)))
    elif kind == "memmap_slices":
        rb = TensorDictReplayBuffer(
            storage=LazyMemmapStorage(40, scratch_dir=scratch / f"memmap_{seed}", existsok=True),
            sampler=SliceSamplerWithoutReplacement(slice_len=3, traj_key="episode"),
            batch_size=6,
            generator=torch.Generator().manual_seed(seed),
        )
        rb.extend(_transitions(45, seed))
        rb.sample()
    elif kind == "dedup":  # observations stored once: episodes of 5 steps, 50 steps into 40 slots
        data = _transitions(50, seed)
        following = torch.roll(data["obs"], -1, 0)
        ends = data["next", "done"][:, 0] | (torch.arange(50) % 5 == 4)
        following[ends] = -following[ends]  # an episode's final observation is not the next one's first
        data["next", "obs"] = following
        rb = TensorDictReplayBuffer(
            storage=DedupNextStorage(LazyTensorStorage(40), keys="obs"),
            batch_size=6,
            generator=torch.Generator().manual_seed(seed),
        )
        rb.extend(data)
    elif kind == "list":
        rb = ReplayBuffer(storage=ListStorage(40), sampler=SamplerWithoutReplacement(), batch_size=6)
        rb.extend(list(_transitions(12, seed).unbind(0)))
        rb.sample()
    else:
        rb = TensorDictReplayBuffer(
            storage=LazyTensorStorage(20), writer=TensorDictMaxValueWriter(rank_key=("next", "reward")), batch_size=6
        )
        rb.extend(_transitions(30, seed))
    return rb


_KINDS = ["without_replacement", "prioritized", "memmap_slices", "list", "max_value", "dedup"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, checkpoint_kit):
    """One checkpoint per kind, with the snapshot of the buffer that wrote it."""
    root = tmp_path_factory.mktemp("saved")
    out = {}
    for kind in _KINDS:
        torch.manual_seed(7)
        rb = _buffer(kind, root, seed=1)
        rb.dumps(root / kind)
        out[kind] = (root / kind, checkpoint_kit.snapshot(rb))
    return out


def _json_paths(obj, path=()):
    """Every key path in a JSON document (dict keys and list positions)."""
    yield path
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _json_paths(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _json_paths(value, (*path, i))


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1, 10**6, 2**40, 2**63, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "../replay_buffer_0.bin", "/etc/passwd", "torch.float64", "torch.int8", "x" * 5]),
    st.lists(st.integers(-2, 50), max_size=3),
    st.dictionaries(st.sampled_from(["__tensor__", "dtype", "shape", "a"]), st.integers(0, 3), max_size=3),
)


@st.composite
def mutations(draw, folder_files: list[str], document: dict):
    kind = draw(
        st.sampled_from(["flip", "truncate", "append", "remove", "rename", "json_edit", "json_delete", "json_name"])
    )
    if kind in ("flip", "truncate", "append", "remove", "rename"):
        return (kind, draw(st.sampled_from(folder_files)), draw(st.floats(0, 1)), draw(st.integers(1, 255)))
    paths = [p for p in _json_paths(document) if p]
    if kind == "json_name":
        names = [p for p in paths if p[-1] == "__tensor__"]
        new = draw(st.sampled_from(["../x.bin", "/tmp/x.bin", "sub/x.bin", "", *folder_files]))
        return (kind, draw(st.sampled_from(names)), new, draw(st.booleans()))
    if kind == "json_delete":
        return (kind, draw(st.sampled_from([p for p in paths if isinstance(p[-1], str)])), None, draw(st.booleans()))
    return (kind, draw(st.sampled_from(paths)), draw(_JSON_VALUES), draw(st.booleans()))


def _apply(mutation, folder: Path, checkpoint_kit) -> bool:
    """Applies a mutation to a checkpoint folder; returns whether the checksums were recomputed."""
    kind, target, arg, extra = mutation
    if kind in ("flip", "truncate", "append", "remove", "rename"):
        path = folder / target
        data = bytearray(path.read_bytes())
        if kind == "flip" and data:
            data[min(int(arg * len(data)), len(data) - 1)] ^= extra
            path.write_bytes(bytes(data))
        elif kind == "truncate":
            path.write_bytes(bytes(data[: int(arg * len(data))]))
        elif kind == "append":
            path.write_bytes(bytes(data) + bytes([extra]) * (1 + int(arg * 16)))
        elif kind == "remove":
            path.unlink()
        elif kind == "rename":
            path.rename(folder / f"{target}.{extra}")
        return False
    json_path = folder / f"{folder.name}.json"
    document = json.loads(json_path.read_text())
    node = document
    for key in target[:-1]:
        node = node[key]
    if kind == "json_delete":
        del node[target[-1]]
    else:
        node[target[-1]] = arg
    json_path.write_text(json.dumps(document))
    if extra:
        checkpoint_kit.reseal(json_path)
    return bool(extra)


def _usable(rb) -> None:
    """A loaded buffer samples, extends and saves without a misleading failure."""
    if len(rb):
        refusal = ""
        try:
            rb.sample()
        except ValueError as err:
            refusal = str(err)
        # only the sampler's documented refusals for the data it holds (too short trajectories)
        assert not refusal or "trajector" in refusal, refusal
    with tempfile.TemporaryDirectory() as scratch:
        rb.dumps(scratch)


@settings(max_examples=600, **_SETTINGS)
@given(kind=st.sampled_from(_KINDS), data=st.data())
def test_a_mutated_checkpoint_loads_exactly_or_is_refused_leaving_the_buffer_unchanged(
    saved, checkpoint_kit, tmp_path_factory, kind, data
):
    golden, snapshot = saved[kind]
    source = golden / "replay_buffer"
    document = json.loads((source / "replay_buffer.json").read_text())
    mutation = data.draw(mutations(sorted(p.name for p in source.iterdir()), document))
    scratch = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    try:
        shutil.copytree(golden, scratch / "ckpt")
        resealed = _apply(mutation, scratch / "ckpt" / "replay_buffer", checkpoint_kit)
        rb = _buffer(kind, scratch, seed=2)  # holds other data than the checkpoint
        before = checkpoint_kit.snapshot(rb)
        try:
            rb.loads(scratch / "ckpt")
            error = None
        except (ValueError, FileNotFoundError) as err:  # anything else is not a clear error: it fails the test
            error = err
        event(f"{mutation[0]}{' resealed' if resealed else ''}: {'refused' if error is not None else 'loaded'}")
        if error is not None:
            assert str(error), mutation
            assert checkpoint_kit.differences(before, checkpoint_kit.snapshot(rb)) == [], (mutation, error)
        elif resealed:
            _usable(rb)
        else:
            assert checkpoint_kit.differences(snapshot, checkpoint_kit.snapshot(rb)) == [], mutation
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_fuzzed_kinds_round_trip_unmutated(saved, checkpoint_kit, tmp_path):
    for kind in _KINDS:
        golden, snapshot = saved[kind]
        rb = _buffer(kind, tmp_path, seed=2)
        rb.loads(golden)
        assert checkpoint_kit.differences(snapshot, checkpoint_kit.snapshot(rb)) == [], kind
