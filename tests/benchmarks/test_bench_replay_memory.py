"""The replay-memory benchmark, tiny: it runs, and its byte counts are the storages' own."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_replay_memory as bench


@pytest.fixture
def tiny(monkeypatch):
    for name, value in {
        "CAPACITY": 64,
        "FRAME": (16, 16),
        "N_ENVS": 2,
        "STEPS": 8,
        "EPISODE_MEAN": 5,
        "BATCH": 8,
        "POOL": 32,
        "SAMPLE_CALLS": 2,
        "EXTEND_CALLS": 2,
        "ROUNDS": 1,
    }.items():
        monkeypatch.setattr(bench, name, value)
    return bench


def _item_bytes(data, exclude=()) -> int:
    return sum(
        value[0].numel() * value.element_size()
        for key, value in data.items(include_nested=True, leaves_only=True)
        if key not in exclude
    )


def test_held_bytes_are_those_of_the_allocated_tensors(tiny):
    plain, dedup, stream = tiny.filled_buffers()
    batch = stream.batch()
    assert len(plain) == len(dedup) == tiny.CAPACITY
    # a plain storage allocates every leaf for max_size items
    assert tiny.held_bytes(plain.storage) == _item_bytes(batch) * tiny.CAPACITY
    # the dedup storage: the items without their next frame, a link per slot, and the kept
    # frames with a free-slot stack (both as many rows as the kept store has grown to)
    without_next = _item_bytes(batch, exclude=[("next", "observation")]) * tiny.CAPACITY
    link = 8 * tiny.CAPACITY
    rows = dedup.storage._kept.capacity
    assert dedup.storage.kept_next <= rows < tiny.CAPACITY
    kept = batch["observation"][0].numel() * rows + 8 * rows
    assert tiny.held_bytes(dedup.storage) == without_next + link + kept
    assert_equal = torch.testing.assert_close
    assert_equal(plain[torch.arange(tiny.CAPACITY)], dedup[torch.arange(tiny.CAPACITY)], rtol=0, atol=0)


def test_run_reports_three_rows(tiny):
    rows = tiny.run()
    assert [r["unit"] for r in rows] == ["MB", "us", "us"]
    memory = rows[0]
    assert memory["tdrl"] < memory["reference"]  # the dedup storage holds less
    assert all(r["ratio"] > 0 for r in rows)
    assert "dedup / plain" in memory["note"]
