"""Smoke tests of the end-to-end benchmark's pieces: they run, and their statistics are right."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_e2e.py"


@pytest.fixture(scope="module")
def bench_e2e():
    spec = importlib.util.spec_from_file_location("bench_e2e_under_test", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_sum(bench_e2e):
    # every tdrl value above every peer value: U = n * m, and a small p
    u, p = bench_e2e.rank_sum([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert u == 16
    assert p < 0.05
    # the six-seed table of 2026-11-22: U = 6 of 36 (the exact two-sided p is 0.065)
    u, p = bench_e2e.rank_sum([749, 511, 558, 1595, 1308, 604], [1740, 655, 1934, 1112, 1559, 8081])
    assert u == 6
    assert 0.04 < p < 0.07
    # ties count half
    u, p = bench_e2e.rank_sum([1.0, 2.0], [1.0, 2.0])
    assert u == 2
    assert p == pytest.approx(1.0)


def test_median_pair_picks_the_pair_with_the_median_ratio(bench_e2e):
    def pair(tdrl_s, hand_s):
        return {"wall_s": tdrl_s}, {"wall_s": hand_s}

    runs = [pair(40.0, 38.0), pair(42.0, 38.0), pair(40.0, 39.0)]  # ratios 0.950, 0.905, 0.975
    assert bench_e2e.median_pair(runs) is runs[0]
    two = [pair(40.0, 39.0), pair(42.0, 38.0)]
    assert bench_e2e.median_pair(two) is two[1]  # the lower middle of an even count
    with pytest.raises(ValueError, match="no"):
        bench_e2e.median_pair([])


@pytest.mark.parametrize("which", ["hand", "hand_fast", "tdrl", "tdrl_fast"])
def test_the_e2e_programs_run(bench_e2e, which):
    if which == "hand":
        out = bench_e2e.hand_tutorial(1000, seed=0)
    elif which == "hand_fast":  # the earlier hand program (its own statistics, floor, sampler, evaluation)
        out = bench_e2e.hand_tutorial(1000, seed=0, variant="fast")
    elif which == "tdrl_fast":  # the tutorial with those choices, by the library's arguments
        out = bench_e2e.seed_tutorial("tdrl", 1000, seed=0, variant="fast")
    else:
        out = bench_e2e.seed_tutorial("tdrl", 1000, seed=0)
    assert out["lib"] == ("hand" if which == "hand_fast" else which)
    assert out["frames"] == 1000
    assert out["wall_s"] > 0
    assert out["collect_fps"] > 0
    # an untrained policy keeps the pendulum up for a few steps: 9.x reward per step
    assert math.isfinite(out["eval_return"])
    assert out["eval_return"] > 9
    assert out["last_train_eval"] > 9  # the evaluation after the first batch ran


def test_the_sb3_program_runs_with_its_evaluations(bench_e2e):
    pytest.importorskip("stable_baselines3")
    # 10,000 frames: the first point where the tutorial's every-10-batches evaluation fires
    out = bench_e2e.sb3_ppo(10_000, seed=0)
    assert out["lib"] == "sb3"
    assert out["frames"] == 10_000
    assert out["wall_s"] > 0
    assert math.isfinite(out["eval_return"])
    assert out["eval_return"] > 9
    assert math.isfinite(out["last_train_eval"])
    assert out["last_train_eval"] > 9


_SOAK = """
import json, sys
import importlib.util
import json
spec = importlib.util.spec_from_file_location("bench_soak_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.TOTAL = 100_000  # 10 batches: the 10% point is the second one
module.BUFFER = 20_000
module.CHECKPOINT_EVERY = 3
print(json.dumps({"rows": module.run(), "workers": module.WORKERS}))
"""


def test_the_soak_reports_flat_memory_descriptors_and_processes():
    # in a process of its own: the descriptors counted are the soak's only, not those that other
    # tests' threads (a compile worker pool, a Ray client) open or close meanwhile (the full suite
    # once counted one more at the end than at 10%, while the soak alone never does)
    done = subprocess.run(
        [sys.executable, "-c", _SOAK, str(_PATH.with_name("bench_soak.py"))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=_PATH.parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rss, fds, procs = out["rows"]
    assert rss["tdrl"] > 0
    assert fds["tdrl"] == fds["reference"]  # a checkpoint or a batch that leaked a descriptor would show
    assert procs["tdrl"] == procs["reference"] == out["workers"]
    assert procs["note"].endswith("0 after shutdown()")


@pytest.fixture(scope="module")
def bench_offpolicy():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_offpolicy_e2e.py"
    spec = importlib.util.spec_from_file_location("bench_offpolicy_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("algo", "frames"), [("dqn", 1280), ("sac", 1088)])
@pytest.mark.parametrize("lib", ["tdrl", "hand"])
def test_the_offpolicy_programs_run_past_their_first_updates(bench_offpolicy, algo, lib, frames):
    out = bench_offpolicy.one(algo, lib, frames, seed=0)
    assert (out["lib"], out["algo"], out["frames"]) == (lib, algo, frames)
    assert out["wall_s"] > 0
    assert math.isfinite(out["eval_return"])
    if algo == "dqn":  # CartPole pays 1 per step: an episode lasts at least a few steps
        assert out["eval_return"] >= 8
    else:  # Pendulum's reward is in [-16.3, 0] per step, 200 steps
        assert -16.3 * 200 <= out["eval_return"] <= 0


@pytest.fixture(scope="module")
def bench_pendulum():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sac_td3_pendulum.py"
    spec = importlib.util.spec_from_file_location("bench_sac_td3_pendulum_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_the_pendulum_learning_programs_update_once_per_frame_and_evaluate_on_schedule(bench_pendulum, algo):
    # 1,100 frames: the 1,000 random ones, then two batches of 50 frames and 50 updates each
    out = bench_pendulum.one_run(algo, seed=0, frames=1100, eval_every=550, eval_episodes=2)
    assert (out["algo"], out["lib"], out["frames"], out["updates"]) == (algo, "tdrl", 1100, 100)
    assert [frames for frames, _ in out["curve"]] == [0, 550, 1100]
    assert len(out["final_episodes"]) == 2
    # Pendulum pays between -16.3 and 0 per step, 200 steps an episode
    assert all(-16.3 * 200 <= r <= 0 for r in out["final_episodes"])
    assert out["eval_return"] == pytest.approx(sum(out["final_episodes"]) / 2)
    # the evaluations draw no torch random numbers: evaluating less often trains the same policy
    sparse = bench_pendulum.one_run(algo, seed=0, frames=1100, eval_every=1100, eval_episodes=2)
    assert [frames for frames, _ in sparse["curve"]] == [0, 1100]
    assert sparse["final_episodes"] == out["final_episodes"]


def test_the_pendulum_rows_median_the_seeds_and_plot(bench_pendulum, monkeypatch, tmp_path):
    def fake_run(algo, seed, final):
        curve = [[0, -1300.0], [2500, final - 100], [5000, final]]
        return {
            "algo": algo, "lib": "tdrl", "seed": seed, "frames": 5000, "wall_s": 2.0, "eval_s": 1.0,
            "eval_return": final, "final_episodes": [final - 1, final + 1], "first_above_bar_frames": None,
            "curve": curve,
        }  # fmt: skip

    finals = {"sac": [-150.0, -400.0, -120.0], "td3": [-250.0, -180.0, -300.0]}
    runs = [fake_run(algo, seed, final) for algo, values in finals.items() for seed, final in enumerate(values)]
    monkeypatch.setattr(bench_pendulum, "run_all_seeds", lambda *args, **kwargs: runs)
    rows = bench_pendulum.run(frames=5000, seeds=(0, 1, 2))
    assert [r["tdrl"] for r in rows] == [-150.0, -250.0]  # the middle seed of each
    assert rows[0]["ratio"] > 1  # -150 is above the -200 bar
    assert rows[1]["ratio"] < 1  # -250 is below it
    assert bench_pendulum.summarize(runs)["td3"]["met"] is False
    png = tmp_path / "curve.png"
    bench_pendulum.plot(runs, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_video_bench_measures_both_roads_with_recording_switched_off():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_video.py"
    spec = importlib.util.spec_from_file_location("bench_video_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.measure("HalfCheetah-v5", steps=40, rounds=1)  # raises if the switched-off recorder kept a frame
    assert len(rows) == 3
    for r in rows:
        assert r["tdrl"] > 0
        assert r["reference"] > 0
        assert r["ratio"] == r["tdrl"] / r["reference"]
