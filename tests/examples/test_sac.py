"""The SAC main job: a short run writes its outputs into a new folder; the CLI refuses bad input in one line."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import subprocess
import sys

import pytest
import torch

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.examples import sac
from tdrl.examples.sac import SACConfig, main, parse, train

PREFIX = "python -m tdrl.examples.sac: error: "


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI on ``argv``; check it exits with code 2 and one stderr line; return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX)
    assert lines[0].endswith("(see --help)")
    return lines[0]


# --- training ------------------------------------------------------------------------------
@pytest.mark.slow
def test_short_training_writes_its_outputs(tmp_path):
    cfg = SACConfig(
        frames=256,
        frames_per_batch=64,
        init_random_frames=128,
        updates_per_batch=4,
        batch_size=32,
        num_cells=32,
        eval_every=2,
        eval_steps=50,
        out_dir=str(tmp_path),
        progress=False,
    )
    result = train(cfg)
    assert result["out_dir"].parent == tmp_path
    assert result["out_dir"].name.startswith("InvertedDoublePendulum-v5-")
    assert sorted(p.name for p in result["out_dir"].iterdir()) == [
        "checkpoint.pt",
        "learning_curve.png",
        "log.csv",
        "logs",  # the --logger csv default's files
        "summary.json",
    ]  # no temporary file left behind
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [64, 128, 192, 256]
    assert rows[0]["loss_qvalue"] == ""  # the random frames come before any update
    assert rows[0]["alpha"] == ""
    assert all(float(r["loss_qvalue"]) >= 0 for r in rows[1:])
    alphas = [float(r["alpha"]) for r in rows[1:]]
    assert alphas[-1] != alphas[0]  # the entropy coefficient is learned
    assert [bool(r["eval_return"]) for r in rows] == [True, False, True, True]  # every 2 batches, and the last
    ckpt = torch.load(result["checkpoint"], weights_only=True)  # loads without unpickling code
    assert ckpt["frames"] == 256
    assert ckpt["updates"] == 3 * 4
    assert ckpt["config"]["env"] == "InvertedDoublePendulum-v5"
    assert any(k.startswith("target_qvalue_network_params") for k in ckpt["loss"])
    assert result["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = sac.make_env(sac.make_base_env("InvertedDoublePendulum-v5", torch.device("cpu")), 1)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = result["policy"](env.reset())
    assert td["action"].shape == (1,)
    assert env.action_spec.is_in(td["action"])


@pytest.mark.slow
def test_fixed_alpha_stays_put(tmp_path):
    cfg = SACConfig(
        frames=128,
        frames_per_batch=64,
        init_random_frames=64,
        updates_per_batch=3,
        batch_size=16,
        num_cells=16,
        alpha_init=0.2,
        fixed_alpha=True,
        eval_steps=10,
        out_dir=str(tmp_path),
        progress=False,
    )
    logs = train(cfg)["logs"]
    assert logs["alpha"][1] == pytest.approx(0.2)


@pytest.mark.slow
def test_a_run_repeats(tmp_path):
    def logs() -> dict:
        cfg = SACConfig(
            frames=192,
            frames_per_batch=64,
            init_random_frames=64,
            updates_per_batch=4,
            batch_size=32,
            num_cells=32,
            eval_steps=50,
            out_dir=str(tmp_path),
            progress=False,
        )
        return train(cfg)["logs"]

    a, b = logs(), logs()
    assert a["loss_qvalue"][1:] == b["loss_qvalue"][1:]
    assert a["eval_return"] == b["eval_return"]


@pytest.mark.slow
def test_sac_learns_pendulum_within_a_small_budget(tmp_path):
    """The job learns: on Pendulum-v1 a random policy's return is about -1,200; after 4k frames
    (1k random, then one update per frame, smaller networks to keep the test short) the
    deterministic policy's evaluation episode returns better than -400."""
    cfg = SACConfig(
        env="Pendulum-v1",
        frames=4096,
        init_random_frames=1024,
        num_cells=64,
        lr=1e-3,
        eval_every=8,
        eval_steps=200,
        out_dir=str(tmp_path),
        progress=False,
    )
    logs = train(cfg)["logs"]
    assert logs["eval_return"][0] < -900  # untrained
    assert max(logs["eval_return"][-3:]) > -400


# --- configuration and defaults ---------------------------------------------------------------
def test_every_config_field_is_an_option():
    assert dataclasses.asdict(parse([])) == dataclasses.asdict(SACConfig())
    text = sac.build_parser().format_help()
    for f in dataclasses.fields(SACConfig):
        flag = ("--no-" if f.default is True else "--") + f.name.replace("_", "-")
        assert flag in text, flag


def test_cli_parses_options_and_switches():
    cfg = parse(["--env", "HalfCheetah-v5", "--frames", "3000", "--fixed-alpha", "--no-progress", "--tau", "0.01"])
    assert (cfg.env, cfg.frames, cfg.fixed_alpha, cfg.progress, cfg.tau) == ("HalfCheetah-v5", 3000, True, False, 0.01)
    assert parse([]).fixed_alpha is False


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split("options:")[1].split())
    for f in dataclasses.fields(SACConfig):
        if isinstance(f.default, bool):
            flag = ("--no-" if f.default else "--") + f.name.replace("_", "-")
            shown = "on)" if f.default else "(default: off)"
        else:
            flag, shown = "--" + f.name.replace("_", "-"), f"(default: {f.default})"
        start = text.index(flag)
        assert shown in text[start : start + 300], (flag, shown)


def test_the_default_budget_is_whole_batches_after_the_warm_up():
    cfg = SACConfig()
    assert cfg.init_random_frames < cfg.frames
    assert cfg.updates_per_batch == cfg.frames_per_batch  # one gradient step per frame
    assert math.isclose(cfg.tau, 0.005)


# --- user errors: one line on stderr, exit code 2 ------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "NoSuchEnv-v0"], r"--env 'NoSuchEnv-v0' is not a registered gymnasium id"),
        (["--env", "HalfCheetah-v9"], r"did you mean HalfCheetah-v"),
        (["--device", "gpu"], r"--device 'gpu' is not a torch device"),
        (["--frames", "0"], r"--frames must be a positive integer, got 0"),
        (["--frames", "10"], r"--frames \(10\) must be at least one batch \(--frames-per-batch 64\)"),
        (["--frames", "5000"], r"--init-random-frames \(5000\) must be below --frames \(5000\)"),
        (["--init-random-frames", "-1"], r"--init-random-frames must be an integer >= 0, got -1"),
        (["--batch-size", "0"], r"--batch-size must be a positive integer"),
        (["--updates-per-batch", "0"], r"--updates-per-batch must be a positive integer"),
        (["--buffer-size", "-5"], r"--buffer-size must be a positive integer"),
        (["--lr", "nan"], r"--lr must be a positive number, got nan"),
        (["--alpha-init", "0"], r"--alpha-init must be a positive number, got 0.0"),
        (["--gamma", "1.5"], r"--gamma must be in \(0, 1\], got 1.5"),
        (["--tau", "0"], r"--tau must be in \(0, 1\], got 0.0"),
        (["--loss-function", "huber"], r"--loss-function must be one of l2, smooth_l1, l1, got .huber."),
        (["--seed", "-1"], r"--seed must be an integer from 0 to 2\*\*32 - 1, got -1"),
        (["--threads", "0"], r"--threads must be a positive integer, got 0"),
        (["--fixed-alpha", "yes"], r"unrecognized arguments: yes"),
    ],
)
def test_a_user_error_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    line = _one_line_error(capsys, [*argv, "--out-dir", str(tmp_path / "runs")])
    assert re.search(message, line), line
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_a_discrete_action_space_is_refused_up_front(capsys, tmp_path):
    line = _one_line_error(capsys, ["--env", "CartPole-v1", "--out-dir", str(tmp_path / "runs")])
    assert "--env CartPole-v1: the action space is not supported (action space Discrete(2)" in line
    assert "a bounded Box action space with a 1-D Box observation" in line
    assert not (tmp_path / "runs").exists()


def test_an_image_observation_is_refused_up_front(capsys, tmp_path):
    line = _one_line_error(capsys, ["--env", "CarRacing-v3", "--out-dir", str(tmp_path / "runs")])
    assert "--env CarRacing-v3" in line
    assert not (tmp_path / "runs").exists()


def test_an_out_dir_that_is_a_file_is_a_user_error(capsys, tmp_path):
    (tmp_path / "taken").write_text("")
    line = _one_line_error(capsys, ["--out-dir", str(tmp_path / "taken")])
    assert re.search(r"--out-dir '.*taken' is a file, not a folder; pass a folder path", line)


def test_validate_raises_a_value_error_for_library_users():
    with pytest.raises(ValueError, match=r"--batch-size must be a positive integer, got 0"):
        sac.validate(SACConfig(batch_size=0))


def test_an_unknown_env_exits_2_from_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "tdrl.examples.sac", "--env", "NoSuchEnv-v0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "--env 'NoSuchEnv-v0' is not a registered gymnasium id" in proc.stderr
    assert proc.stdout == ""
