"""The VMAS collection benchmark, tiny: both loops run and collect the same number of frames from the same policy."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("vmas")

from benchmarks import bench_vmas as bench


@pytest.fixture
def tiny(monkeypatch):
    for name, value in {"NUM_ENVS": 4, "STEPS": 6, "MAX_STEPS": 4, "CELLS": 8}.items():
        monkeypatch.setattr(bench, name, value)
    return bench


def test_the_benchmark_runs_and_reports_one_ratio(tiny):
    rows = tiny.run(rounds=1)
    main = rows[0]
    assert main["bar"] == ">= 0.9"
    assert main["tdrl"] > 0
    assert main["reference"] > 0
    assert main["ratio"] > 0


def test_the_collector_batch_has_the_hand_loops_layout(tiny):
    """Same frames per batch and the same per-agent shapes as what the hand loop stores."""
    from tdrl.envs.libs.vmas import VmasEnv

    net = tiny._make_net(VmasEnv(tiny.SCENARIO, num_envs=1, seed=0))
    _, collector = tiny._tdrl(net)
    batch = next(iter(collector))
    collector.shutdown()
    assert batch.numel() == tiny.NUM_ENVS * tiny.STEPS
    assert batch["agents", "observation"].shape == (tiny.NUM_ENVS, tiny.STEPS, 4, 18)
    assert batch["agents", "action"].shape == (tiny.NUM_ENVS, tiny.STEPS, 4, 2)
    assert batch["next", "agents", "reward"].shape == (tiny.NUM_ENVS, tiny.STEPS, 4, 1)
    # MAX_STEPS=4 < STEPS=6: every env ends an episode every 4th step, the same step for all (the collector
    # goes on where the warm-up batch stopped, so where the first one falls depends on it)
    done = batch["next", "done"].squeeze(-1)
    assert (done == done[:1]).all()
    steps = done[0].nonzero().flatten().tolist()
    assert steps
    assert all(b - a == tiny.MAX_STEPS for a, b in itertools.pairwise(steps))
