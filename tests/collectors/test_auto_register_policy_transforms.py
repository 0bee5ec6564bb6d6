"""``auto_register_policy_transforms=True``: the collector appends the InitTracker / primers the policy needs.

What is appended, for each kind of policy and env, is what TorchRL 0.14.1's collector
appends (differential, on the venv where it is installed); nothing is appended twice;
``False`` and ``None`` leave the env alone, and a recurrent policy without its primer is
then refused with this option named in the message.
"""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import MultiSyncDataCollector, SyncDataCollector
from tdrl.collectors._policy_transforms import missing_policy_transforms
from tdrl.envs import InitTracker, TransformedEnv
from tdrl.modules import GRUModule, LSTMModule
from tdrl.testing import ContinuousActionMock


def _env() -> ContinuousActionMock:
    return ContinuousActionMock(obs_dim=3, action_dim=2, max_steps=4)


def _linear() -> TensorDictModule:
    return TensorDictModule(nn.Linear(3, 2), ["observation"], ["action"])


def _lstm_policy(lstm_cls=LSTMModule) -> TensorDictSequential:
    lstm = lstm_cls(
        input_size=3, hidden_size=5, in_keys=["observation", "h", "c"], out_keys=["f", ("next", "h"), ("next", "c")]
    )
    return TensorDictSequential(lstm, TensorDictModule(nn.Linear(5, 2), ["f"], ["action"]))


def _gru_policy(gru_cls=GRUModule) -> TensorDictSequential:
    gru = gru_cls(input_size=3, hidden_size=5, in_keys=["observation", "h"], out_keys=["f", ("next", "h")])
    return TensorDictSequential(gru, TensorDictModule(nn.Linear(5, 2), ["f"], ["action"]))


def _names(env) -> list[str]:
    transform = getattr(env, "transform", None)
    if transform is None:
        return []
    inner = list(transform) if hasattr(transform, "__iter__") else [transform]
    return [type(t).__name__ for t in inner]


def test_recurrent_policy_gets_init_tracker_and_primer_and_runs():
    collector = SyncDataCollector(
        _env(), _lstm_policy(), frames_per_batch=8, total_frames=8, auto_register_policy_transforms=True
    )
    assert _names(collector.env) == ["InitTracker", "TensorDictPrimer"]
    batch = next(iter(collector))
    assert batch["next", "h"].shape == (8, 1, 5)
    assert batch["is_init"].squeeze(-1).tolist() == [True, False, False, False] * 2
    # the state is carried within an episode: the input at t is the output at t - 1
    carried = ~batch["is_init"][1:].squeeze(-1)
    torch.testing.assert_close(batch["h"][1:][carried], batch["next", "h"][:-1][carried])


def test_nothing_is_appended_twice():
    policy = _lstm_policy()
    first = SyncDataCollector(_env(), policy, frames_per_batch=4, total_frames=4, auto_register_policy_transforms=True)
    second = SyncDataCollector(
        first.env, policy, frames_per_batch=4, total_frames=4, auto_register_policy_transforms=True
    )
    assert second.env is first.env
    assert _names(second.env) == ["InitTracker", "TensorDictPrimer"]
    assert missing_policy_transforms(second.env, policy) == []


def test_env_with_its_own_init_tracker_gets_only_the_primer():
    env = TransformedEnv(_env(), InitTracker())
    collector = SyncDataCollector(
        env, _gru_policy(), frames_per_batch=4, total_frames=4, auto_register_policy_transforms=True
    )
    assert _names(collector.env) == ["InitTracker", "TensorDictPrimer"]


@pytest.mark.parametrize("flag", [False, None])
def test_false_and_none_leave_the_env_alone(flag):
    env = _env()
    collector = SyncDataCollector(
        env, _linear(), frames_per_batch=4, total_frames=4, auto_register_policy_transforms=flag
    )
    assert collector.env is env


@pytest.mark.parametrize("flag", [False, None])
def test_a_recurrent_policy_without_its_primer_names_the_option(flag):
    collector = SyncDataCollector(
        _env(), _lstm_policy(), frames_per_batch=4, total_frames=4, auto_register_policy_transforms=flag
    )
    with pytest.raises(ValueError, match="hidden state") as info:
        next(iter(collector))
    assert "auto_register_policy_transforms=True" in "\n".join(getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_a_bad_flag_is_refused(value):
    with pytest.raises(TypeError, match=r"auto_register_policy_transforms must be True, False or None, got"):
        SyncDataCollector(_env(), None, frames_per_batch=2, total_frames=2, auto_register_policy_transforms=value)
    with pytest.raises(TypeError, match=r"auto_register_policy_transforms must be True, False or None, got"):
        MultiSyncDataCollector([_env], None, frames_per_batch=2, total_frames=2, auto_register_policy_transforms=value)


def test_multi_process_workers_register_in_their_own_envs():
    collector = MultiSyncDataCollector(
        [_env] * 2, _gru_policy(), frames_per_batch=8, total_frames=8, auto_register_policy_transforms=True
    )
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    assert batch["is_init"].shape == (2, 4, 1)
    assert batch["next", "h"].shape == (2, 4, 1, 5)


# --- against TorchRL 0.14.1 ----------------------------------------------------------------------
CASES = ["none", "function", "linear", "lstm", "gru", "lstm_env_has_tracker", "gru_env_has_everything"]


def _case(case: str, lib: str):
    """(env, policy) for ``case``, built with tdrl's or TorchRL's classes."""
    if lib == "tdrl":
        from tdrl import envs, modules
        from tdrl.envs.libs.gym import GymEnv
    else:
        from torchrl import envs, modules
        from torchrl.envs import GymEnv
    env = GymEnv("CartPole-v1")
    torch.manual_seed(0)
    policy = {
        "none": lambda: None,
        "function": lambda: functools.partial(lambda td: td.set("action", env.action_spec.rand())),
        "linear": _linear,
        "lstm": lambda: _lstm_policy(modules.LSTMModule),
        "gru": lambda: _gru_policy(modules.GRUModule),
        "lstm_env_has_tracker": lambda: _lstm_policy(modules.LSTMModule),
        "gru_env_has_everything": lambda: _gru_policy(modules.GRUModule),
    }[case]()
    if isinstance(policy, TensorDictModule):  # CartPole has 4 observations
        policy = TensorDictModule(nn.Linear(4, 2), ["observation"], ["action"])
    if isinstance(policy, TensorDictSequential):
        rnn = policy[0]
        keys = (["observation", "h", "c"], ["f", ("next", "h"), ("next", "c")])
        if "gru" in case:
            keys = (["observation", "h"], ["f", ("next", "h")])
        rnn = type(rnn)(input_size=4, hidden_size=5, in_keys=keys[0], out_keys=keys[1])
        policy = TensorDictSequential(rnn, TensorDictModule(nn.Linear(5, 2), ["f"], ["action"]))
        if case == "lstm_env_has_tracker":
            env = envs.TransformedEnv(env, envs.InitTracker())
        if case == "gru_env_has_everything":
            env = envs.TransformedEnv(env, envs.Compose(envs.InitTracker(), rnn.make_tensordict_primer()))
    return env, policy


@pytest.mark.parametrize("case", CASES)
def test_appends_what_torchrl_appends(case):
    torchrl_collectors = pytest.importorskip("torchrl.collectors")
    pytest.importorskip("gymnasium")
    env, policy = _case(case, "tdrl")
    ours = SyncDataCollector(env, policy, frames_per_batch=4, total_frames=4, auto_register_policy_transforms=True)
    env, policy = _case(case, "torchrl")
    theirs = torchrl_collectors.Collector(
        env, policy, frames_per_batch=4, total_frames=4, auto_register_policy_transforms=True
    )
    assert _names(ours.env) == _names(theirs.env)
    if case not in ("none", "function"):
        assert set(ours.env.observation_spec.keys(True, True)) == set(theirs.env.observation_spec.keys(True, True))
    theirs.shutdown()
