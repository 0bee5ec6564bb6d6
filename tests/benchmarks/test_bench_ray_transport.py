"""The Ray transport benchmark, tiny: it runs on a local Ray runtime and every figure is measured."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray")

from benchmarks import bench_ray_transport as bench


@pytest.fixture
def tiny(monkeypatch):
    for name, value in {
        "PAYLOADS": {"1KB": 1 << 10},
        "READERS": (1, 2),
        "BROADCAST_BYTES": 1 << 12,
        "FRAMES": 50,
        "BATCH": 8,
        "CALLS": 4,
        "ROUNDS": 1,
    }.items():
        monkeypatch.setattr(bench, name, value)
    return bench


def test_run_reports_every_message_cost_against_its_reference(tiny):
    rows = tiny.run()
    figures = [r["figure"] for r in rows]
    assert len(rows) == 7
    assert figures[0].startswith("Ray: empty actor call")
    assert any("read by 2 actors" in f for f in figures)
    assert figures[-2:] == [
        "RayReplayBuffer: extend(50 CartPole frames) (reference: the same buffer, local)",
        "RayReplayBuffer: sample(8) (reference: the same buffer, local)",
    ]
    for r in rows:
        assert r["unit"] == "us"
        assert math.isfinite(r["ratio"])
        assert r["ratio"] > 0


def test_the_cartpole_batch_looks_like_a_collector_batch():
    batch = bench.cartpole_batch(7)
    assert batch.batch_size == (7,)
    assert batch["next", "observation"].shape == (7, 4)
    assert batch["action"].sum(-1).eq(1).all()
