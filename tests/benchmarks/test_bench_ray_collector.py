"""The RayCollector benchmark, tiny: every figure is measured and comes with its reference."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")
pytest.importorskip("gymnasium")

from benchmarks import bench_ray_collector as bench


@pytest.fixture
def tiny(monkeypatch):
    for name, value in {"FRAMES": 20, "SMALL": 10, "BATCHES": 1, "WEIGHT_CALLS": 2}.items():
        monkeypatch.setattr(bench, name, value)
    return bench


def test_the_benchmark_reports_throughput_overhead_and_weight_sync(tiny):
    import ray

    rows = tiny.run(rounds=1)
    figures = [r["figure"] for r in rows]
    assert len(rows) == 5
    assert sum("frames/s" in f for f in figures) == 2
    assert sum("update_policy_weights_" in f for f in figures) == 2
    for r in rows:
        assert r["tdrl"] > 0
        assert r["reference"] > 0
        assert r["ratio"] > 0
    assert set(rows[-1]["raw_ms"]) == {"push1", "push2", "put", "put_get", "empty_call"}
    assert "MB of weights" in rows[-1]["note"]
    if ray.is_initialized():  # (run() stops the runtime it started)
        assert not [n for n in ray.util.list_named_actors() if n.startswith("tdrl-RayCollector")]
