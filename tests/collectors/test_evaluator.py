"""Evaluator: metrics, weight snapshots, schedules, logging, backends, failures and shutdown."""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule

from tdrl.collectors import Evaluator
from tdrl.collectors._eval_backends import THREAD_LOCAL_EXPLORATION
from tdrl.envs import RewardSum, StepCounter, TransformedEnv, VecNorm
from tdrl.envs.utils import ExplorationType, exploration_type, set_exploration_type
from tdrl.testing import ContinuousActionMock, CountingEnv, FailingEnv, MemoryLogger

METRICS = ("eval/reward", "eval/reward_std", "eval/num_episodes", "eval/episode_length")


class StaggeredEnv(CountingEnv):
    """Three sub-envs whose episodes last 2, 3 and 4 steps, with reward 1 per step."""

    def __init__(self):
        super().__init__(max_steps=2, batch_size=[3])
        self.limits = torch.tensor([[2.0], [3.0], [4.0]])

    def _step(self, tensordict):
        self.count += 1
        terminated = self.count >= self.limits
        return TensorDict(
            {"observation": self.count.clone(), "reward": torch.ones_like(self.count), **self._done(terminated)},
            self.batch_size,
        )


class SlowEnv(ContinuousActionMock):
    def _step(self, tensordict):
        time.sleep(0.02)
        return super()._step(tensordict)


def make_env():
    return ContinuousActionMock(max_steps=5)


def make_policy(seed: int = 1) -> TensorDictModule:
    torch.manual_seed(seed)
    return TensorDictModule(torch.nn.Linear(3, 2), in_keys=["observation"], out_keys=["action"])


def zero_action(td: TensorDictBase) -> TensorDictBase:
    return td.set("action", torch.zeros(*td.batch_size, 1, dtype=torch.long))


def poll_until_done(evaluator: Evaluator, deadline: float) -> dict | None:
    """Polls as a training loop would (never waiting long) until a result comes or the deadline passes."""
    while time.monotonic() < deadline:
        if (result := evaluator.poll(timeout=0.1)) is not None:
            return result
    return None


def metrics_of(result: dict) -> dict:
    return {k: result[k] for k in METRICS}


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_are_the_mean_and_spread_of_whole_episodes():
    # The first three episodes to end: sub-env 0 at step 2 (return 2), sub-env 1 at step 3 (3),
    # then at step 4 sub-env 0 again (2) before sub-env 2 (4), by row: returns and lengths 2, 3, 2.
    evaluator = Evaluator(StaggeredEnv(), zero_action, num_trajectories=3, frames_per_batch=3, seed=0)
    result = evaluator.evaluate(step=7)
    mean = 7 / 3
    std = (((2 - mean) ** 2 * 2 + (3 - mean) ** 2) / 2) ** 0.5
    assert result["eval/reward"] == pytest.approx(mean)
    assert result["eval/reward_std"] == pytest.approx(std)
    assert result["eval/episode_length"] == pytest.approx(mean)
    assert result["eval/num_episodes"] == 3
    assert result["eval/step"] == 7
    assert result["eval/fps"] > 0


def test_reward_sum_and_step_counter_are_read_when_the_env_has_them():
    env = TransformedEnv(CountingEnv(max_steps=10), RewardSum())
    env.append_transform(StepCounter(max_steps=4))  # truncates at 4: return 4, length 4
    result = Evaluator(env, zero_action, num_trajectories=2).evaluate()
    assert (result["eval/reward"], result["eval/episode_length"], result["eval/num_episodes"]) == (4.0, 4.0, 2)


def test_max_steps_truncates_episodes_and_log_prefix_names_the_metrics():
    result = Evaluator(
        CountingEnv(max_steps=100), zero_action, max_steps=3, num_trajectories=2, log_prefix="test"
    ).evaluate()
    assert (result["test/reward"], result["test/episode_length"]) == (3.0, 3.0)


def test_metrics_fn_adds_prefixed_metrics():
    seen = []

    def metrics_fn(batch):
        seen.append(batch.batch_size)
        return {"longest": batch.shape[-1]}

    result = Evaluator(StaggeredEnv(), zero_action, num_trajectories=3, metrics_fn=metrics_fn).evaluate()
    assert result["eval/longest"] == 3
    assert seen == [torch.Size([3, 3])]


def test_the_policy_runs_deterministically_by_default_and_as_asked():
    modes = []

    def policy(td):
        modes.append(exploration_type())
        return zero_action(td)

    Evaluator(CountingEnv(max_steps=2), policy, num_trajectories=1).evaluate()
    assert set(modes) == {ExplorationType.DETERMINISTIC}
    modes.clear()
    Evaluator(CountingEnv(max_steps=2), policy, num_trajectories=1, exploration_type=ExplorationType.RANDOM).evaluate()
    assert set(modes) == {ExplorationType.RANDOM}


@pytest.mark.skipif(not THREAD_LOCAL_EXPLORATION, reason="tensordict < 0.15 has one exploration type per process")
def test_a_background_evaluation_keeps_its_exploration_type_to_its_thread():
    inside, release = threading.Event(), threading.Event()
    modes = []

    def policy(td):
        modes.append(exploration_type())
        inside.set()
        release.wait(10)
        return zero_action(td)

    evaluator = Evaluator(CountingEnv(max_steps=1), policy, num_trajectories=1)
    with set_exploration_type(ExplorationType.RANDOM):  # the training loop's mode
        assert evaluator.trigger_eval()
        assert inside.wait(10)
        assert exploration_type() is ExplorationType.RANDOM  # not switched by the evaluation thread
        release.set()
        assert evaluator.wait(timeout=30) is not None
        assert exploration_type() is ExplorationType.RANDOM
    assert exploration_type() is None  # nothing left set after the block
    assert set(modes) == {ExplorationType.DETERMINISTIC}
    evaluator.shutdown()


@pytest.mark.skipif(THREAD_LOCAL_EXPLORATION, reason="this tensordict keeps the exploration type to a thread")
def test_without_a_thread_local_exploration_type_trigger_eval_runs_in_the_caller_with_a_warning():
    threads = []

    def policy(td):
        threads.append(threading.current_thread())
        return zero_action(td)

    evaluator = Evaluator(CountingEnv(max_steps=1), policy, num_trajectories=1)
    with pytest.warns(RuntimeWarning, match="backend='process'"):
        assert evaluator.trigger_eval(step=5)
    result = evaluator.wait(timeout=30)
    assert result["eval/step"] == 5
    assert result["eval/num_episodes"] == 1
    assert set(threads) == {threading.main_thread()}
    assert exploration_type() is None
    evaluator.shutdown()


# --- weights and reproducibility -------------------------------------------------------------------


def test_same_weights_and_seed_give_the_same_metrics_and_the_callers_rng_is_untouched():
    policy = make_policy()
    evaluator = Evaluator(make_env, policy, num_trajectories=3, seed=3)
    before = torch.get_rng_state()
    first, second = evaluator.evaluate(), evaluator.evaluate()
    assert torch.equal(torch.get_rng_state(), before)
    assert metrics_of(first) == metrics_of(second)
    other = Evaluator(make_env, policy, num_trajectories=3, seed=4).evaluate()
    assert metrics_of(other) != metrics_of(first)


def test_each_evaluation_takes_the_policys_weights_of_its_request():
    policy = make_policy()
    evaluator = Evaluator(make_env, policy, num_trajectories=3, seed=0)
    original = evaluator.evaluate()
    assert evaluator.trigger_eval()
    with torch.no_grad():
        policy.module.weight.zero_()  # training moves on while the evaluation runs
    triggered = evaluator.wait(timeout=30)
    changed = evaluator.evaluate()
    assert metrics_of(triggered) == metrics_of(original)
    assert metrics_of(changed) != metrics_of(original)
    evaluator.shutdown()


def test_explicit_weights_module_or_tensordict_are_evaluated():
    trained, other = make_policy(1), make_policy(2)
    evaluator = Evaluator(make_env, policy_factory=lambda env: make_policy(3), num_trajectories=2, seed=0)
    by_module = evaluator.evaluate(trained)
    by_params = evaluator.evaluate(TensorDict.from_module(trained))
    reference = Evaluator(make_env, trained, num_trajectories=2, seed=0).evaluate()
    assert metrics_of(by_module) == metrics_of(by_params) == metrics_of(reference)
    assert metrics_of(evaluator.evaluate(other)) != metrics_of(reference)


def test_weights_of_another_architecture_are_refused_naming_the_keys():
    evaluator = Evaluator(make_env, make_policy(), num_trajectories=1)
    wrong = TensorDictModule(torch.nn.Linear(3, 2, bias=False), in_keys=["observation"], out_keys=["action"])
    with pytest.raises(KeyError, match=r"missing.*bias"):
        evaluator.evaluate(wrong)
    with pytest.raises(TypeError, match=r"nn.Module or a TensorDict"):
        evaluator.evaluate({"weight": torch.zeros(2, 3)})


# --- schedule and logging --------------------------------------------------------------------------


def test_every_frames_triggers_once_per_interval_passed_and_logs_at_the_frame_count():
    logger = MemoryLogger("run", "logs")
    evaluator = Evaluator(CountingEnv(max_steps=2), zero_action, num_trajectories=1, every_frames=25, logger=logger)
    results = [evaluator.maybe_evaluate(frames=10, wait=True) for _ in range(8)]
    # frames 10, 20, 30 (passes 25), 40, 50 (passes 50), 60, 70, 80 (passes 75)
    assert [r is not None for r in results] == [False, False, True, False, True, False, False, True]
    steps = sorted({step for _, _, step in logger.scalars})
    assert steps == [30, 50, 80]
    names = {name for name, _, step in logger.scalars if step == 30}
    assert names == {"eval/reward", "eval/reward_std", "eval/num_episodes", "eval/episode_length", "eval/fps"}


def test_every_iters_triggers_in_the_background_and_results_are_collected_later():
    evaluator = Evaluator(CountingEnv(max_steps=2), zero_action, num_trajectories=1, every_iters=3)
    results = [evaluator.maybe_evaluate() for _ in range(5)]
    assert evaluator.pending or any(r is not None for r in results)
    collected = [r for r in results if r is not None] + ([evaluator.wait(timeout=30)] if evaluator.pending else [])
    assert [r["eval/step"] for r in collected] == [3]
    assert not evaluator.pending
    evaluator.shutdown()


def test_on_result_gets_a_tensordict_of_the_metrics():
    received = []
    Evaluator(CountingEnv(max_steps=2), zero_action, num_trajectories=1, on_result=received.append).evaluate(step=5)
    (td,) = received
    assert isinstance(td, TensorDictBase)
    assert td["eval/step"].item() == 5
    assert td["eval/reward"].item() == 2.0


def test_busy_policy_skip_error_and_queue():
    def slow(env):
        return lambda td: (time.sleep(0.01), zero_action(td))[1]

    skip = Evaluator(CountingEnv(max_steps=10), policy_factory=slow, num_trajectories=3)
    assert skip.trigger_eval(step=0)
    assert not skip.trigger_eval(step=1)
    assert skip.wait()["eval/step"] == 0
    assert skip.wait() is None
    error = Evaluator(CountingEnv(max_steps=10), policy_factory=slow, num_trajectories=3, busy_policy="error")
    error.trigger_eval()
    with pytest.raises(RuntimeError, match=r"already pending.*busy_policy='error'"):
        error.trigger_eval()
    queued = Evaluator(CountingEnv(max_steps=10), policy_factory=slow, num_trajectories=3, busy_policy="queue")
    assert queued.trigger_eval(step=0)
    assert queued.trigger_eval(step=1)
    assert [queued.wait()["eval/step"], queued.wait()["eval/step"]] == [0, 1]
    for evaluator in (skip, error, queued):
        evaluator.shutdown()


def test_state_dict_restores_the_schedule():
    evaluator = Evaluator(CountingEnv(max_steps=2), zero_action, num_trajectories=1, every_frames=25)
    for _ in range(2):
        evaluator.maybe_evaluate(frames=10, wait=True)
    restored = Evaluator(CountingEnv(max_steps=2), zero_action, num_trajectories=1, every_frames=25)
    restored.load_state_dict(evaluator.state_dict())
    assert restored.maybe_evaluate(frames=10, wait=True)["eval/step"] == 30
    with pytest.raises(KeyError, match="missing"):
        restored.load_state_dict({})


# --- the process backend ---------------------------------------------------------------------------


def test_process_backend_gives_the_callers_metrics_and_takes_the_snapshot(descendants):
    policy = make_policy()
    in_caller = Evaluator(make_env, policy, num_trajectories=3, seed=5).evaluate()
    evaluator = Evaluator(make_env, policy, num_trajectories=3, seed=5, backend="process")
    assert evaluator.trigger_eval(step=1)
    with torch.no_grad():
        policy.module.weight.zero_()  # after the trigger: not what is evaluated
    result = evaluator.wait(timeout=60)
    assert result["eval/step"] == 1
    assert metrics_of(result) == metrics_of(in_caller)
    changed = evaluator.evaluate(step=2)  # synchronous, in the worker: the zeroed weights
    assert metrics_of(changed) == metrics_of(Evaluator(make_env, policy, num_trajectories=3, seed=5).evaluate())
    assert descendants()
    evaluator.shutdown()
    assert descendants() == []
    assert multiprocessing.active_children() == []
    with pytest.raises(RuntimeError, match="shut down"):
        evaluator.trigger_eval()


def test_process_backend_never_blocks_the_caller_and_survives_ctrl_c(descendants, ctrl_c_after):
    evaluator = Evaluator(lambda: SlowEnv(max_steps=5), make_policy(), num_trajectories=4, backend="process")
    start = time.monotonic()
    evaluator.trigger_eval(step=0)
    assert evaluator.poll() is None
    assert evaluator.pending
    assert time.monotonic() - start < 0.3
    with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.05):
        evaluator.wait()
    assert evaluator.wait(timeout=60)["eval/num_episodes"] == 4  # the interrupted wait lost nothing
    del evaluator
    gc.collect()
    assert descendants() == []


def test_a_crash_in_the_evaluation_process_raises_its_cause_in_the_caller(descendants):
    evaluator = Evaluator(lambda: FailingEnv(fail_after=3), zero_action, num_trajectories=1, backend="process")
    evaluator.trigger_eval()
    deadline = time.monotonic() + 60
    with pytest.raises(RuntimeError, match=r"(?s)Evaluator worker 0 raised.*FailingEnv: failing on purpose"):
        poll_until_done(evaluator, deadline)
    evaluator.shutdown()
    broken = Evaluator(lambda: 1 / 0, zero_action, backend="process")
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        broken.evaluate()
    broken.shutdown()
    assert descendants() == []


def test_a_crash_in_the_evaluation_thread_raises_its_cause_in_the_caller():
    evaluator = Evaluator(FailingEnv(fail_after=3), zero_action, num_trajectories=1)
    evaluator.trigger_eval()
    with pytest.raises(RuntimeError, match="evaluation thread raised") as info:
        evaluator.wait(timeout=30)
    assert "failing on purpose" in str(info.value.__cause__)
    evaluator.shutdown()


# --- bad arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_trajectories": 0}, ValueError, "num_trajectories must be a positive int, got 0"),
        ({"max_steps": -1}, ValueError, "max_steps must be None or a positive int"),
        ({"every_frames": 1.5}, ValueError, "every_frames must be None or a positive int"),
        ({"backend": "ray"}, ValueError, "Ray backend is not offered"),
        ({"busy_policy": "drop"}, ValueError, "busy_policy must be one of"),
        ({"policy_factory": lambda env: zero_action}, ValueError, "exactly one of policy= .* got both"),
        ({"logger": object()}, TypeError, "logger must be a tdrl.record.loggers.Logger"),
        ({"backend": "process"}, ValueError, "env must be a callable"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(kwargs, error, match):
    with pytest.raises(error, match=match):
        Evaluator(CountingEnv(), zero_action, **kwargs)


def test_bad_env_policy_and_schedule_are_refused():
    with pytest.raises(ValueError, match="got neither"):
        Evaluator(CountingEnv())
    with pytest.raises(TypeError, match=r"env must be a tdrl EnvBase"):
        Evaluator(object(), zero_action)
    evaluator = Evaluator(CountingEnv(), zero_action)
    with pytest.raises(ValueError, match="needs a schedule"):
        evaluator.maybe_evaluate()
    with pytest.raises(ValueError, match=r"frames must be an int >= 0"):
        Evaluator(CountingEnv(), zero_action, every_iters=1).maybe_evaluate(frames=-1)


def test_a_queued_evaluation_still_runs_after_the_one_before_it_failed():
    calls = []

    def policy(td):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first evaluation fails")
        return zero_action(td)

    evaluator = Evaluator(CountingEnv(max_steps=2), policy, num_trajectories=1, busy_policy="queue")
    evaluator.trigger_eval(step=0)
    evaluator.trigger_eval(step=1)
    with pytest.raises(RuntimeError, match="evaluation thread raised"):
        evaluator.wait(timeout=30)
    assert evaluator.wait(timeout=30)["eval/step"] == 1
    assert not evaluator.pending
    evaluator.shutdown()


def test_vecnorm_statistics_do_not_learn_from_evaluation_episodes():
    env = TransformedEnv(ContinuousActionMock(max_steps=5), VecNorm(decay=1.0))
    env.rollout(3)  # statistics from "training"
    before = env.transform.stats.clone()
    Evaluator(env, make_policy(), num_trajectories=2).evaluate()
    assert (env.transform.stats == before).all()


def test_a_killed_evaluation_process_raises_in_the_caller_instead_of_hanging(descendants):
    evaluator = Evaluator(lambda: SlowEnv(max_steps=5), make_policy(), num_trajectories=20, backend="process")
    evaluator.trigger_eval()
    worker = evaluator._backend.pool.procs[0]
    worker.kill()
    with pytest.raises(RuntimeError, match=r"Evaluator worker 0 died while '\w+' \(exit code -9\)"):
        evaluator.wait()
    with pytest.raises(RuntimeError, match="cannot be used any more"):
        evaluator.trigger_eval()
    evaluator.shutdown()
    assert descendants() == []
