"""The competitive MADDPG program on simple_tag, tiny: it runs, its losses are finite and the critics learn."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("pettingzoo")
pytest.importorskip("mpe2")

from benchmarks import bench_maddpg_pettingzoo as bench

MINIATURE = {"frames_per_batch": 40, "updates": 3, "max_cycles": 10, "memory_size": 200, "cells": 8, "batch_size": 16}
TINY = {"iters": 2, "frames_per_batch": 200, "updates": 40, "max_cycles": 25, "memory_size": 10_000, "cells": 64}


@pytest.fixture(scope="module")
def run():
    return bench.train(seed=0, **TINY)


@pytest.mark.slow
def test_maddpg_trains_both_groups_then_only_the_chasers(run):
    curve = run["curve"]
    assert [p["frames"] for p in curve] == [200, 400]
    assert {"adversary/loss_value", "agent/loss_value"} <= set(curve[0])
    # the evader stops learning after half the iterations; the chasers go on
    assert "agent/loss_value" not in curve[1]
    assert "adversary/loss_value" in curve[1]
    assert len(run["critic_losses"]["adversary"]) == 2 * TINY["updates"]
    assert len(run["critic_losses"]["agent"]) == TINY["updates"]


@pytest.mark.slow
def test_maddpg_losses_are_finite_and_the_critics_fit(run):
    for point in run["curve"]:
        for key, value in point.items():
            if "loss" in key:
                assert math.isfinite(value), (key, value)
    # the evader's critic regresses dense boundary penalties: on the first batch's data its loss falls
    losses = run["critic_losses"]["agent"]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first, (first, last)


@pytest.mark.slow
def test_maddpg_episode_returns_have_the_signs_of_the_game(run):
    # simple_tag pays the chasers +10 per catch and charges the evader 10 per catch and for leaving the field
    for point in run["curve"]:
        assert point["adversary/episode_return"] >= 0
        assert point["agent/episode_return"] <= 0


def test_episode_returns_split_the_batch_at_done():
    import torch
    from tensordict import TensorDict

    reward = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(5, 1, 1).expand(5, 2, 1)
    done = torch.tensor([False, True, False, False, True]).reshape(5, 1)
    batch = TensorDict({"next": {"done": done, "team": TensorDict({"reward": reward}, [5, 2])}}, [5])
    assert bench.episode_returns(batch, "team") == [3.0, 12.0]


@pytest.mark.slow
def test_maddpg_program_writes_its_curve(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "HYPERPARAMETERS", {**bench.HYPERPARAMETERS, "max_cycles": 25, "cells": 32})
    json_path, png_path = tmp_path / "curve.json", tmp_path / "curve.png"
    args = ["--iters", "2", "--frames-per-batch", "100", "--updates", "2"]
    bench.main([*args, "--json", str(json_path), "--png", str(png_path)])
    written = json.loads(json_path.read_text())
    assert [p["frames"] for p in written["curve"]] == [100, 200]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("maddpg", [True, False])
def test_maddpg_program_runs_under_tdrl_at_miniature_size(maddpg):
    """The whole program (collector on group keys, DDPGLoss per group with a centralised critic) in a second."""
    run = bench.train(seed=0, lib_name="tdrl", maddpg=maddpg, iters=2, **MINIATURE)
    assert run["lib"] == "tdrl"
    assert run["maddpg"] is maddpg
    assert [p["frames"] for p in run["curve"]] == [40, 80]
    assert len(run["critic_losses"]["adversary"]) == 2 * MINIATURE["updates"]
    assert len(run["critic_losses"]["agent"]) == MINIATURE["updates"]  # the evader stops after half the run
    for point in run["curve"]:
        assert all(math.isfinite(v) for k, v in point.items() if "loss" in k), point
