"""The main job: short PPO runs write their outputs into a new folder; the CLI refuses bad input in one line."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import gymnasium
import numpy as np
import pytest
import torch

from tdrl.examples import ppo
from tdrl.examples.ppo import PPOConfig, main, parse, train
from tdrl.modules import OneHotCategorical, TanhNormal


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI on ``argv``; check it exits with code 2 and one stderr line; return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m tdrl.examples.ppo: error: ")
    assert lines[0].endswith("(see --help)")
    return lines[0]


def _reset(result: dict):
    """A first observation of a new env of the trained run, normalized as in training."""
    env = ppo.make_env(ppo.make_base_env(result["config"].env, torch.device("cpu")), 1, obs_norm=result["obs_norm"])
    return env.reset()


# --- training ------------------------------------------------------------------------------
@pytest.mark.slow
def test_short_training_writes_its_outputs(tmp_path):
    result = train(PPOConfig(frames=2000, out_dir=str(tmp_path), progress=False, eval_every=1))
    assert result["out_dir"].parent == tmp_path
    for key in ("plot", "csv", "checkpoint", "summary"):
        assert result[key].parent == result["out_dir"]
        assert result[key].stat().st_size > 0
    assert sorted(p.name for p in result["out_dir"].iterdir()) == [
        "checkpoint.pt",
        "learning_curve.png",
        "log.csv",
        "logs",  # the --logger csv default's files
        "summary.json",
    ]  # no temporary file left behind
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [1000, 2000]
    assert all(r["eval_return"] for r in rows)
    ckpt = torch.load(result["checkpoint"], weights_only=True)  # loads without unpickling code
    assert ckpt["frames"] == 2000
    assert ckpt["action_kind"] == "continuous"
    assert ckpt["config"]["env"] == "InvertedDoublePendulum-v5"
    policy = result["policy"]
    assert isinstance(policy.get_dist(policy(_reset(result))), TanhNormal)


@pytest.mark.slow
def test_cartpole_trains_a_categorical_policy(tmp_path):
    result = train(PPOConfig(env="CartPole-v1", frames=2000, out_dir=str(tmp_path), progress=False, eval_every=1))
    assert result["out_dir"].name.startswith("CartPole-v1-")
    policy = result["policy"]
    td = policy(_reset(result))
    assert isinstance(policy.get_dist(td), OneHotCategorical)
    action = td["action"]
    assert action.shape == (2,)  # one-hot, as GymEnv's default action spec
    assert action.sum() == 1
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [1000, 2000]
    assert all(0 < float(r["eval_return"]) <= 500 for r in rows)
    ckpt = torch.load(result["checkpoint"], weights_only=True)
    assert ckpt["action_kind"] == "discrete"
    assert ckpt["policy"]["module.0.module.6.weight"].shape[0] == 2  # logits for CartPole's 2 actions
    assert result["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_run_repeats_and_evaluation_does_not_change_training(tmp_path):
    def logs(eval_every: int) -> dict:
        cfg = PPOConfig(env="CartPole-v1", frames=2000, out_dir=str(tmp_path), progress=False, eval_every=eval_every)
        return train(cfg)["logs"]

    a, b = logs(1), logs(10)
    assert a["train_reward"] == b["train_reward"]
    assert a["step_count"] == b["step_count"]
    assert a["eval_return"][0] == b["eval_return"][0]
    assert len(a["eval_return"]) == len(b["eval_return"]) == 2  # the last batch is always evaluated


# --- configuration and defaults ---------------------------------------------------------------
def test_cli_parses_options():
    cfg = parse(
        ["--env", "InvertedDoublePendulum-v4", "--frames", "3000", "--seed", "7", "--device", "cpu", "--threads", "2"]
    )
    assert (cfg.env, cfg.frames, cfg.seed, cfg.device, cfg.threads) == ("InvertedDoublePendulum-v4", 3000, 7, "cpu", 2)
    cfg = parse(["--sub-batch-size", "32", "--lr", "1e-3", "--entropy-coef", "0", "--no-progress"])
    assert (cfg.sub_batch_size, cfg.lr, cfg.entropy_coef, cfg.progress) == (32, 1e-3, 0.0, False)


def test_every_config_field_is_an_option():
    assert dataclasses.asdict(parse([])) == dataclasses.asdict(PPOConfig())
    for f in dataclasses.fields(PPOConfig):
        flag = ("--no-" if f.default is True else "--") + f.name.replace("_", "-")
        assert flag in ppo.build_parser().format_help(), flag


def test_the_defaults_are_the_seed_tutorials():
    cfg = parse([])
    expected = {"env": "InvertedDoublePendulum-v5", "frames": 50_000, "eval_every": 10, "eval_steps": 1000}
    expected.update(frames_per_batch=1000, sub_batch_size=64, num_epochs=10, num_cells=256, lr=3e-4)
    expected.update(max_grad_norm=1.0, clip_epsilon=0.2, gamma=0.99, lmbda=0.95, entropy_coef=1e-4)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    blocks: dict[str, str] = {}  # option -> its help text, from its flag to the next flag
    flag = None
    for line in text.split("options:")[1].splitlines():
        start = re.match(r"^  (-\S+)", line)
        if start:
            flag = start.group(1).rstrip(",")
            blocks[flag] = line[start.end() :]
        elif flag:
            blocks[flag] += " " + line
    blocks = {flag: " ".join(body.split()) for flag, body in blocks.items()}
    for f in dataclasses.fields(PPOConfig):
        flag = ("--no-" if f.default is True else "--") + f.name.replace("_", "-")
        assert flag in blocks, f"{flag} missing from --help"
        match = re.search(r"\(default: (.*)\)$", blocks[flag])
        assert match, f"{flag} does not show its default: {blocks[flag]!r}"
        shown = match.group(1)
        if f.default is True:
            assert "on" in shown
        else:
            assert shown == str(f.default), (flag, shown)
    assert "new subfolder" in blocks["--out-dir"]


# --- user errors: one line on stderr, exit code 2 ------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "NoSuchEnv-v0"], r"--env 'NoSuchEnv-v0' is not a registered gymnasium id"),
        (["--env", "CartPole-v9"], r"did you mean CartPole-v1"),
        (["--device", "gpu"], r"--device 'gpu' is not a torch device; use cpu, cuda, cuda:N or mps"),
        (["--device", "meta"], r"device type 'meta' is not supported"),
        (["--frames", "-5"], r"--frames must be a positive integer, got -5"),
        (["--frames", "0"], r"--frames must be a positive integer, got 0"),
        (["--frames", "10"], r"--frames \(10\) must be at least one batch \(--frames-per-batch 1000\)"),
        (["--frames", "1e5"], r"argument --frames: invalid int value: '1e5'"),
        (["--frames-per-batch", "0"], r"--frames-per-batch must be a positive integer, got 0"),
        (["--sub-batch-size", "-1"], r"--sub-batch-size must be a positive integer, got -1"),
        (["--sub-batch-size", "2000"], r"--sub-batch-size \(2000\) must be at most --frames-per-batch \(1000\)"),
        (["--num-epochs", "0"], r"--num-epochs must be a positive integer"),
        (["--eval-every", "0"], r"--eval-every must be a positive integer"),
        (["--threads", "0"], r"--threads must be a positive integer"),
        (["--seed", "1.5"], r"argument --seed: invalid int value: '1.5'"),
        (["--seed", "abc"], r"argument --seed: invalid int value: 'abc'"),
        (["--seed", "-1"], r"--seed must be an integer from 0 to 2\*\*32 - 1, got -1"),
        (["--lr", "0"], r"--lr must be a positive number, got 0.0"),
        (["--lr", "nan"], r"--lr must be a positive number, got nan"),
        (["--entropy-coef", "-0.1"], r"--entropy-coef must be a number >= 0"),
        (["--gamma", "1.5"], r"--gamma must be in \(0, 1\], got 1.5"),
        (["--lmbda", "-1"], r"--lmbda must be in \[0, 1\]"),
        (["--bogus"], r"unrecognized arguments: --bogus"),
    ],
)
def test_a_user_error_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    line = _one_line_error(capsys, [*argv, "--out-dir", str(tmp_path / "runs")])
    assert re.search(message, line), line
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_cuda_without_a_gpu_is_a_user_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = _one_line_error(capsys, ["--device", "cuda", "--out-dir", str(tmp_path)])
    assert "--device cuda: CUDA is not available on this machine" in line
    assert "use --device cpu" in line


def test_an_out_dir_that_is_a_file_is_a_user_error(capsys, tmp_path):
    (tmp_path / "taken").write_text("")
    line = _one_line_error(capsys, ["--env", "CartPole-v1", "--out-dir", str(tmp_path / "taken")])
    assert re.search(r"--out-dir '.*taken' is a file, not a folder; pass a folder path", line)


def test_validate_raises_a_value_error_for_library_users():
    with pytest.raises(ValueError, match=r"--frames must be a positive integer, got 0"):
        ppo.validate(PPOConfig(frames=0))


def test_an_unknown_env_exits_2_from_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "tdrl.examples.ppo", "--env", "NoSuchEnv-v0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "--env 'NoSuchEnv-v0' is not a registered gymnasium id" in proc.stderr
    assert proc.stdout == ""


class _MultiDiscreteEnv(gymnasium.Env):
    """A gymnasium env with a MultiDiscrete action space, which the main job does not support."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gymnasium.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class _DictObservationEnv(_MultiDiscreteEnv):
    observation_space = gymnasium.spaces.Dict({"position": gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)})
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"position": np.zeros(3, np.float32)}, {}

    def step(self, action):
        return {"position": np.zeros(3, np.float32)}, 0.0, False, False, {}


@pytest.fixture
def registered():
    """Register test envs with gymnasium for one test, then remove them."""
    ids = {"TdrlTestMultiDiscrete-v0": _MultiDiscreteEnv, "TdrlTestDictObservation-v0": _DictObservationEnv}
    for env_id, cls in ids.items():
        gymnasium.register(id=env_id, entry_point=cls)
    yield
    for env_id in ids:
        gymnasium.envs.registry.pop(env_id)


def test_an_unsupported_action_space_is_refused_up_front(capsys, tmp_path, registered):
    line = _one_line_error(capsys, ["--env", "TdrlTestMultiDiscrete-v0", "--out-dir", str(tmp_path / "runs")])
    assert "--env TdrlTestMultiDiscrete-v0: the action space is not supported (action space MultiDiscrete" in line
    assert "Box action space with finite bounds (TanhNormal policy) or a Discrete one (categorical policy)" in line
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ppo.ConfigError, match="the action space is not supported"):
        train(PPOConfig(env="TdrlTestMultiDiscrete-v0", out_dir=str(tmp_path / "runs")))


def test_an_unsupported_observation_is_refused_up_front(capsys, tmp_path, registered):
    line = _one_line_error(capsys, ["--env", "TdrlTestDictObservation-v0", "--out-dir", str(tmp_path)])
    assert "the observation is not supported (action space Discrete(2), observation space Dict(" in line


# --- outputs -----------------------------------------------------------------------------------
def test_two_runs_never_share_a_folder(tmp_path):
    with ThreadPoolExecutor(8) as pool:  # all in the same second: each takes the next free suffix
        folders = list(pool.map(lambda _: ppo.new_run_dir(tmp_path / "runs", "CartPole-v1"), range(8)))
    assert len(set(folders)) == 8
    assert all(p.is_dir() and p.parent == tmp_path / "runs" and p.name.startswith("CartPole-v1-") for p in folders)
    assert re.fullmatch(r"CartPole-v1-\d{8}-\d{6}", min(folders, key=lambda p: len(p.name)).name)
    assert ppo.new_run_dir(tmp_path, "ALE/Pong-v5").name.startswith("ALE_Pong-v5-")  # no nested folder


@pytest.mark.parametrize("frames", [2_000, 20_000, 100_000, 1_000_000])
def test_the_plot_labels_every_axis_and_its_x_ticks_do_not_overlap(frames):
    import matplotlib.pyplot as plt

    n = frames // 1000
    batches = [1000 * (i + 1) for i in range(n)]
    evals = [f for i, f in enumerate(batches) if i % 10 == 0 or i == n - 1]
    logs = {
        "frames": batches,
        "train_reward": [i / n for i in range(n)],
        "step_count": [i % 500 for i in range(n)],
        "eval_frames": evals,
        "eval_return": [float(f) / 100 for f in evals],
    }
    fig = ppo.plot_figure(logs, "PPO")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        assert [ax.get_ylabel() for ax in fig.axes] == ["reward per step", "steps", "return"]
        for ax in fig.axes:
            assert ax.get_xlabel() == "frames"
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
            assert len(ticks) >= 3
            assert all(len(t.get_text()) <= 5 for t in ticks), [t.get_text() for t in ticks]  # 20k, 1.2M
            boxes = [t.get_window_extent(renderer) for t in ticks]
            for left, right in itertools.pairwise(boxes):
                assert left.x1 < right.x0, [t.get_text() for t in ticks]
    finally:
        plt.close(fig)
