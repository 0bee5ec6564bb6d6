"""The main job: a short PPO run writes its plot, log and checkpoint; the CLI checks its input."""

from __future__ import annotations

import csv
import dataclasses
import re

import gymnasium
import numpy as np
import pytest
import torch

from tdrl.examples import ppo
from tdrl.examples.ppo import PPOConfig, main, parse, train
from tdrl.modules import OneHotCategorical, TanhNormal


def _reset(env_id: str, result: dict):
    """A first observation of a new env of the trained run, normalized as in training."""
    env = ppo.make_env(ppo.make_base_env(env_id, torch.device("cpu")), 1, obs_norm=result["obs_norm"])
    return env.reset()


@pytest.mark.slow
def test_short_training_writes_its_outputs(tmp_path):
    result = train(PPOConfig(frames=2000, out_dir=str(tmp_path), progress=False, eval_every=1))
    for key in ("plot", "csv", "checkpoint"):
        assert result[key].exists()
        assert result[key].stat().st_size > 0
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [1000, 2000]
    assert all(r["eval_return"] for r in rows)
    ckpt = torch.load(result["checkpoint"], weights_only=True)  # loads without unpickling code
    assert ckpt["frames"] == 2000
    assert ckpt["action_kind"] == "continuous"
    assert ckpt["config"]["env"] == "InvertedDoublePendulum-v5"
    policy = result["policy"]
    assert isinstance(policy.get_dist(policy(_reset("InvertedDoublePendulum-v5", result))), TanhNormal)


@pytest.mark.slow
def test_cartpole_trains_a_categorical_policy(tmp_path):
    result = train(PPOConfig(env="CartPole-v1", frames=2000, out_dir=str(tmp_path), progress=False, eval_every=1))
    policy = result["policy"]
    td = policy(_reset("CartPole-v1", result))
    assert isinstance(policy.get_dist(td), OneHotCategorical)
    action = td["action"]
    assert action.shape == (2,)  # one-hot, as GymEnv's default action spec
    assert action.sum() == 1
    rows = list(csv.DictReader(result["csv"].open()))
    assert [int(r["frames"]) for r in rows] == [1000, 2000]
    assert all(0 < float(r["eval_return"]) <= 500 for r in rows)
    ckpt = torch.load(result["checkpoint"], weights_only=True)
    assert ckpt["action_kind"] == "discrete"


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


def test_cli_rejects_a_budget_below_one_batch(capsys):
    with pytest.raises(SystemExit):
        main(["--frames", "10"])
    assert "must be at least --frames-per-batch" in capsys.readouterr().err


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


def test_an_unsupported_action_space_is_refused_up_front(tmp_path, registered):
    with pytest.raises(ppo.ConfigError, match=r"the action space is not supported \(action space MultiDiscrete"):
        train(PPOConfig(env="TdrlTestMultiDiscrete-v0", out_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()


def test_an_unsupported_observation_is_refused_up_front(tmp_path, registered):
    with pytest.raises(ppo.ConfigError, match=r"the observation is not supported \(action space Discrete\(2\)"):
        train(PPOConfig(env="TdrlTestDictObservation-v0", out_dir=str(tmp_path)))
