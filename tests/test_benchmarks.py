"""Smoke tests of the end-to-end benchmark's pieces: they run, and their statistics are right."""

from __future__ import annotations

import importlib.util
import math
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


@pytest.mark.parametrize("which", ["hand", "tdrl"])
def test_the_e2e_programs_run(bench_e2e, which):
    if which == "hand":
        out = bench_e2e.hand_tutorial(1000, seed=0)
    else:
        out = bench_e2e.seed_tutorial("tdrl", 1000, seed=0)
    assert out["lib"] == which
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


def test_the_soak_reports_flat_memory_descriptors_and_processes(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_soak_under_test", _PATH.with_name("bench_soak.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "TOTAL", 100_000)  # 10 batches: the 10% point is the second one
    monkeypatch.setattr(module, "BUFFER", 20_000)
    monkeypatch.setattr(module, "CHECKPOINT_EVERY", 3)
    rss, fds, procs = module.run()
    assert rss["tdrl"] > 0
    assert fds["tdrl"] == fds["reference"]  # a checkpoint or a batch that leaked a descriptor would show
    assert procs["tdrl"] == procs["reference"] == module.WORKERS
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
