"""The main job: a short PPO run writes its plot, log and checkpoint; the CLI checks its input."""

from __future__ import annotations

import csv

import pytest
import torch

from tdrl.examples.ppo import PPOConfig, _parse, main, train


@pytest.mark.slow
def test_short_training_writes_its_outputs(tmp_path):
    result = train(PPOConfig(frames=2000, out_dir=str(tmp_path), progress=False, eval_every=1))
    for key in ("plot", "csv", "checkpoint"):
        assert result[key].exists()
        assert result[key].stat().st_size > 0
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [1000, 2000]
    assert all(r["eval_return"] for r in rows)
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    assert ckpt["frames"] == 2000
    assert "policy" in ckpt
    assert ckpt["config"]["env"] == "InvertedDoublePendulum-v5"


@pytest.mark.slow
def test_a_run_repeats_and_evaluation_does_not_change_training(tmp_path):
    def logs(eval_every: int) -> dict:
        cfg = PPOConfig(frames=2000, out_dir=str(tmp_path), progress=False, eval_every=eval_every)
        return train(cfg)["logs"]

    a, b = logs(1), logs(10)
    assert a["train_reward"] == b["train_reward"]
    assert a["step_count"] == b["step_count"]
    assert a["eval_return"][0] == b["eval_return"][0]
    assert len(a["eval_return"]) == len(b["eval_return"]) == 2  # the last batch is always evaluated


def test_cli_parses_options():
    cfg = _parse(
        ["--env", "InvertedDoublePendulum-v4", "--frames", "3000", "--seed", "7", "--device", "cpu", "--threads", "2"]
    )
    assert (cfg.env, cfg.frames, cfg.seed, cfg.device, cfg.threads) == ("InvertedDoublePendulum-v4", 3000, 7, "cpu", 2)


def test_cli_rejects_a_budget_below_one_batch(capsys):
    with pytest.raises(SystemExit):
        main(["--frames", "10"])
    assert "must be at least --frames-per-batch" in capsys.readouterr().err
