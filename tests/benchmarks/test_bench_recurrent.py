"""The recurrent benchmark: an LSTM learns the recall task that a feed-forward policy cannot, and the full run works.

The recall task (``tdrl.testing.RecallEnv``, two cues, the answer four steps later) is
solved by recurrent PPO and recurrent DQN within a few thousand frames, trained on
``[B, T]`` sequences drawn by a ``SliceSampler`` in recurrent mode. The same programs with
a feed-forward layer in place of the LSTM stay at chance (0.5): the observation at the
answer step is the same whatever the cue was.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench_recurrent as bench

CHANCE = 0.5


@pytest.mark.parametrize(("algo", "frames"), [("ppo", 4_800), ("dqn", 3_200)])
def test_an_lstm_learns_to_recall_the_cue_and_a_feed_forward_policy_cannot(algo: str, frames: int) -> None:
    train = bench.TRAIN[algo]
    lstm = train("recall", "lstm", seed=0, frames=frames, eval_points=1)
    ff = train("recall", "ff", seed=0, frames=frames, eval_points=1)
    assert lstm["frames"] >= frames - bench.PPO_CONFIGS["recall"].envs * bench.PPO_CONFIGS["recall"].steps
    # the evaluation is greedy over 512 fresh episodes: the LSTM names the cue, the MLP guesses
    assert lstm["final"] >= 0.95, lstm
    assert abs(ff["final"] - CHANCE) < 0.1, ff


def test_the_velocity_mask_keeps_position_and_angle() -> None:
    pytest.importorskip("gymnasium")
    env = bench.base_env("masked_cartpole", 2, seed=0)
    assert env.observation_spec["observation"].shape == (2, 2)
    data = env.rollout(5)
    assert data["observation"].shape == (2, 5, 2)
    assert data["is_init"][:, 0].all()
    env.close()


@pytest.mark.slow
def test_the_benchmark_runs_briefly_on_masked_cartpole(tmp_path) -> None:
    pytest.importorskip("gymnasium")
    out_json, out_png = tmp_path / "runs.json", tmp_path / "curves.png"
    result = bench.main(["--tasks", "masked_cartpole", "--seeds", "0", "--frames-scale", "0.025",
                         "--json", str(out_json), "--png", str(out_png)])  # fmt: skip
    saved = json.loads(out_json.read_text())
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    combos = {(r["algo"], r["kind"]) for r in saved["runs"]}
    assert combos == {("ppo", "lstm"), ("ppo", "ff"), ("dqn", "lstm"), ("dqn", "ff")}
    for run in saved["runs"]:
        assert run["task"] == "masked_cartpole"
        assert run["curve"], run
        # an episode lasts at least a few steps and at most 500: the return is in that range
        assert 1 <= run["final"] <= 500
        assert math.isfinite(run["final"])
    if bench.plot(result["runs"], out_png):
        assert out_png.stat().st_size > 0
