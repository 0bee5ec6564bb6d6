"""The validation mode: ``set_validation`` checks the values of every step against the specs."""

from __future__ import annotations

import os

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import TransformedEnv
from tdrl.envs._stepping import ActionRunner, td_from_flat
from tdrl.envs.common import EnvBase
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.transforms import RewardScaling
from tdrl.envs.utils import check_env_specs, set_validation, validation_enabled
from tdrl.specs import Bounded, Categorical, MultiCategorical, OneHot, Unbounded
from tdrl.testing import CountingEnv


class _Echo(EnvBase):
    """Writes the action it gets (as float) as the next observation; the action spec is given."""

    def __init__(self, action_spec, observation=None, batch_size=()) -> None:
        super().__init__(batch_size=batch_size)
        self.observation_spec = Unbounded(shape=(*batch_size, 1))
        self.action_spec = action_spec
        self.observation = observation

    def _reset(self, tensordict, **kwargs):
        return TensorDict({"observation": torch.zeros(*self.batch_size, 1)}, self.batch_size)

    def _step(self, tensordict):
        flags = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        obs = torch.zeros(*self.batch_size, 1) if self.observation is None else self.observation.clone()
        reward = torch.zeros(*self.batch_size, 1)
        return TensorDict(
            {"observation": obs, "reward": reward, "done": flags, "terminated": flags, "truncated": flags},
            self.batch_size,
        )

    def _set_seed(self, seed):
        pass


def _step_with(env, action):
    td = env.reset()
    td["action"] = action
    return env.step(td)


def test_off_by_default_and_scoped():
    assert not validation_enabled()
    with set_validation():
        assert validation_enabled()
        with set_validation(False):
            assert not validation_enabled()
        assert validation_enabled()
    assert not validation_enabled()


def test_decorator_restores_the_previous_mode_even_on_error():
    @set_validation(True)
    def failing():
        assert validation_enabled()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing()
    assert not validation_enabled()
    assert failing.__name__ == "failing"


def test_bad_actions_pass_silently_when_off():
    env = GymEnv("Pendulum-v1")
    _step_with(env, torch.tensor([1e6]))
    _step_with(env, torch.tensor([float("nan")]))


@pytest.mark.parametrize(
    ("value", "match", "fix"),
    [
        (1e6, r"value 1000000\.0 at index \[0\] is outside \[-2\.0, 2\.0\]", "env.action_spec.project(action)"),
        (float("nan"), r"value nan at index \[0\] is not finite", "policy's network"),
        (float("-inf"), r"value -inf at index \[0\] is not finite", "policy's network"),
    ],
    ids=["out-of-bounds", "nan", "inf"],
)
def test_a_bad_continuous_action_names_the_key_the_bound_and_the_value(value, match, fix):
    env = GymEnv("Pendulum-v1")
    prefix = r"GymEnv\.step: action 'action' is not in its spec: "
    with set_validation(), pytest.raises(ValueError, match=prefix + match) as info:
        _step_with(env, torch.tensor([value]))
    assert "Spec: Bounded(shape=(1,), dtype=torch.float32, device=cpu, low=-2.0, high=2.0)" in str(info.value)
    assert fix in str(info.value)


def test_a_legal_action_steps_as_usual_under_validation():
    env = GymEnv("Pendulum-v1")
    with set_validation(outputs=True):
        td = _step_with(env, torch.tensor([2.0]))
        env.rollout(5)
    assert td["next", "observation"].shape == (3,)


@pytest.mark.parametrize(
    ("spec", "action", "match"),
    [
        (Categorical(3), torch.tensor(3), r"value 3 at index \[\] is outside 0\.\.2"),
        (Categorical(3), torch.tensor(-1), r"value -1 at index \[\] is outside 0\.\.2"),
        (MultiCategorical([2, 3]), torch.tensor([1, 3]), r"value 3 at index \[1\] is outside 0\.\.2"),
        (OneHot(3, dtype=torch.int64), torch.tensor([0, 0, 0]), r"row \[0, 0, 0\] at index \[\] is not one-hot"),
        (OneHot(3, dtype=torch.int64), torch.tensor([0, 2, -1]), r"row \[0, 2, -1\] at index \[\] is not one-hot"),
    ],
    ids=["above-n", "negative", "multicategorical", "onehot-no-one", "onehot-sums-to-one"],
)
def test_a_discrete_action_outside_its_set_is_refused(spec, action, match):
    env = _Echo(spec)
    _step_with(env, action)  # off: passes
    with (
        set_validation(),
        pytest.raises(ValueError, match=r"_Echo\.step: action 'action' is not in its spec: " + match),
    ):
        _step_with(env, action)


def test_batched_actions_name_the_offending_index():
    env = _Echo(Bounded(-1.0, 1.0, shape=(4, 2)), batch_size=(4,))
    action = torch.zeros(4, 2)
    action[2, 1] = 1.5
    with set_validation(), pytest.raises(ValueError, match=r"value 1\.5 at index \[2, 1\] is outside \[-1\.0, 1\.0\]"):
        _step_with(env, action)


def test_outputs_are_checked_only_when_asked():
    env = _Echo(Unbounded(shape=(1,)), observation=torch.tensor([float("nan")]))
    with set_validation():
        _step_with(env, torch.zeros(1))
    with (
        set_validation(outputs=True),
        pytest.raises(ValueError, match=r"_Echo\.step wrote \('next', 'observation'\) outside its spec: value nan"),
    ):
        _step_with(env, torch.zeros(1))


def test_reset_outputs_are_checked():
    class _NanReset(_Echo):
        def _reset(self, tensordict, **kwargs):
            return TensorDict({"observation": torch.tensor([float("inf")])}, [])

    env = _NanReset(Unbounded(shape=(1,)))
    with set_validation(outputs=True), pytest.raises(ValueError, match=r"_NanReset\.reset wrote 'observation'"):
        env.reset()


def test_transformed_env_validates_the_action_against_its_own_spec():
    env = TransformedEnv(GymEnv("Pendulum-v1"), RewardScaling(scale=2.0))
    with set_validation(), pytest.raises(ValueError, match=r"TransformedEnv\.step: action 'action'"):
        _step_with(env, torch.tensor([3.0]))


def test_rollout_with_validation_takes_the_checked_path():
    class _NanObs(CountingEnv):
        def _step(self, tensordict):
            out = super()._step(tensordict)
            out["observation"] = out["observation"] * float("nan")
            return out

    env = _NanObs()
    env.rollout(3)
    with set_validation(outputs=True), pytest.raises(ValueError, match="is not finite"):
        env.rollout(3)


def test_action_runner_checks_each_step_under_validation():
    env = _Echo(Categorical(2, shape=(1,)))
    actions = td_from_flat({"action": torch.tensor([[0], [1], [5]])}, torch.Size([3]))
    ActionRunner(env).run(env.reset(), actions, 3)  # off: the direct path runs the bad action
    with set_validation(), pytest.raises(ValueError, match=r"value 5 at index \[0\] is outside 0\.\.1"):
        ActionRunner(env).run(env.reset(), actions, 3)


class _NanObservationEnv(CountingEnv):
    def _step(self, tensordict):
        out = super()._step(tensordict)
        out["observation"] = torch.full_like(out["observation"], float("nan"))
        return out


def test_check_env_specs_validates_values_by_default():
    with pytest.raises(ValueError, match=r"check_env_specs: \('next', 'observation'\) .*value nan .* is not finite"):
        check_env_specs(_NanObservationEnv())
    check_env_specs(_NanObservationEnv(), validate=False)
    assert not validation_enabled()


def test_check_env_specs_checks_what_rand_gives_for_the_action_spec():
    class _BadRand(Bounded):
        def rand(self, shape=None):
            return super().rand(shape) + 10.0

    env = _Echo(_BadRand(-1.0, 1.0, shape=(1,)))
    with pytest.raises(ValueError, match=r"action 'action' is not in its spec: value .* is outside \[-1\.0, 1\.0\]"):
        check_env_specs(env)


# --- collectors and batched envs check every step under set_validation -------------------------------


class _GoesOutOfBounds:
    """A policy whose actions leave the ``[-1, 1]`` box from its ``after``-th call on (picklable)."""

    def __init__(self, after: int = 5) -> None:
        self.after, self.calls = after, 0

    def __call__(self, td):
        self.calls += 1
        action = torch.zeros(*td.batch_size, 2)
        if self.calls > self.after:
            action.fill_(5.0)
        td.set("action", action)
        return td


def _make_mock():
    from tdrl.testing import ContinuousActionMock

    return ContinuousActionMock(max_steps=1000)


@pytest.mark.parametrize("batched", [None, "SerialEnv", "ParallelEnv"])
def test_collector_checks_every_step_under_validation(batched):
    from tdrl.collectors import SyncDataCollector
    from tdrl.envs import ParallelEnv, SerialEnv

    def make():
        if batched is None:
            return _make_mock()
        cls = SerialEnv if batched == "SerialEnv" else ParallelEnv
        return cls(2, _make_mock, **({"mp_start_method": "fork"} if cls is ParallelEnv else {}))

    env = make()
    off = SyncDataCollector(env, _GoesOutOfBounds(), frames_per_batch=20 * env.batch_size.numel(), total_frames=-1)
    next(iter(off))  # off: the collector's direct path passes the bad actions on (the first step was fine)
    off.shutdown()
    env = make()
    on = SyncDataCollector(env, _GoesOutOfBounds(), frames_per_batch=20 * env.batch_size.numel(), total_frames=-1)
    with set_validation(), pytest.raises(ValueError, match=r"action 'action' is not in its spec: value 5\.0"):
        next(iter(on))
    on.shutdown()


def test_multi_process_collector_workers_follow_the_parents_validation_mode():
    from tdrl.collectors import MultiSyncDataCollector

    collector = MultiSyncDataCollector(
        [_make_mock] * 2, _GoesOutOfBounds(), frames_per_batch=40, total_frames=-1, mp_start_method="fork"
    )
    try:
        batches = iter(collector)
        next(batches)  # off in the parent: off in the workers
        with set_validation(), pytest.raises(RuntimeError, match=r"action 'action' is not in its spec: value 5\.0"):
            next(batches)
    finally:
        collector.shutdown()


def test_random_collection_of_a_batched_env_checks_outputs_under_validation():
    from tdrl.collectors import SyncDataCollector
    from tdrl.envs import SerialEnv

    collector = SyncDataCollector(SerialEnv(2, _NanObservationEnv), None, frames_per_batch=8, total_frames=-1)
    next(iter(collector))  # off: random actions run open loop, unchecked
    with set_validation(outputs=True), pytest.raises(ValueError, match="is not finite"):
        next(iter(collector))
    collector.shutdown()


@pytest.mark.parametrize(("value", "expected"), [("1", "True False"), ("outputs", "True True"), ("0", "False False")])
def test_the_environment_variable_sets_the_starting_mode(value, expected):
    import subprocess
    import sys

    code = "from tdrl.envs._validation import _validation as v; print(v.actions, v.outputs)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "TDRL_VALIDATION": value}, capture_output=True, text=True
    )
    assert out.stdout.strip() == expected, out.stderr


def test_a_bad_environment_variable_says_what_it_takes():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import tdrl.envs"],
        env={**os.environ, "TDRL_VALIDATION": "yes"},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "TDRL_VALIDATION='yes' is not a validation mode: use 1" in out.stderr
