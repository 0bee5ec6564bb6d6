"""The MAPPO/IPPO program on VMAS navigation, tiny: it runs, writes its curve, and (slow) learns."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("vmas")

from benchmarks import bench_mappo_vmas as bench

# 4 envs x 100 steps = 400 frames per batch: one minibatch of 400 per epoch
TINY = {"iters": 2, "num_envs": 4, "num_epochs": 2, "cells": 32}


@pytest.mark.parametrize("algo", bench.ALGOS)
def test_the_program_runs_and_reports_its_curve(algo):
    out = bench.train(seed=0, mappo=algo == "mappo", **TINY)
    assert out["algo"] == algo
    assert out["lib"] == "tdrl"
    assert [p["frames"] for p in out["curve"]] == [400, 800]
    for point in out["curve"]:
        # every env ends its 100-step episode in each batch: every point has a reward
        assert math.isfinite(point["episode_reward_mean"])
        for name in ("loss_objective", "loss_critic", "loss_entropy"):
            assert math.isfinite(point[name]), (name, point[name])
        # the entropy term is -1e-4 * entropy: small, and negative while the policy is wide
        assert -1e-2 < point["loss_entropy"] < 0
    assert out["final_episode_reward_mean"] == out["curve"][-1]["episode_reward_mean"]
    assert out["wall_s"] >= out["collect_s"] + out["train_s"] - 1e-6


def test_episode_reward_mean_averages_the_agents_at_episode_ends():
    import torch
    from tensordict import TensorDict

    # 2 envs x 3 steps x 2 agents; env 0 ends at step 1, env 1 at step 2
    done = torch.zeros(2, 3, 2, 1, dtype=torch.bool)
    done[0, 1] = True
    done[1, 2] = True
    reward = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2, 1)
    batch = TensorDict({"next": {"agents": {"done": done, "episode_reward": reward}}}, [2, 3])
    # ends: env 0 step 1 -> agents 2, 3; env 1 step 2 -> agents 10, 11
    assert bench.episode_reward_mean(batch) == pytest.approx((2 + 3 + 10 + 11) / 4)


def test_the_program_writes_its_runs_and_curve(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "HYPERPARAMETERS", {**bench.HYPERPARAMETERS, "cells": 16})
    json_path, png_path = tmp_path / "runs.json", tmp_path / "curve.png"
    args = ["--iters", "1", "--envs", "4", "--epochs", "1", "--seeds", "3"]
    bench.main([*args, "--json", str(json_path), "--png", str(png_path)])
    written = json.loads(json_path.read_text())
    assert [(r["algo"], r["seed"]) for r in written] == [("mappo", 3), ("ippo", 3)]
    assert all(len(r["curve"]) == 1 for r in written)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second command with another seed adds its runs; the first command's stay
    args = ["--iters", "1", "--envs", "4", "--epochs", "1", "--seeds", "1", "--algos", "ippo"]
    bench.main([*args, "--json", str(json_path), "--png", str(png_path)])
    written = json.loads(json_path.read_text())
    assert [(r["algo"], r["seed"]) for r in written] == [("ippo", 1), ("mappo", 3), ("ippo", 3)]
    table = bench.summary(written)
    assert sorted(table) == ["tdrl ippo", "tdrl mappo"]
    assert sorted(table["tdrl ippo"]["final"]) == [1, 3]


@pytest.mark.slow
def test_mappo_learns_to_navigate():
    """The tutorial's setup, cut to 3 of its 10 iterations: the episode reward per agent rises from the first batch.

    In the full runs (benchmarks/mappo_vmas_tdrl.json) it rose by 1.1 to 1.7 from the first
    to the third batch for every seed and both algorithms.
    """
    out = bench.train(seed=0, mappo=True, iters=3)
    curve = [p["episode_reward_mean"] for p in out["curve"]]
    assert curve[-1] > curve[0] + 0.5, curve
