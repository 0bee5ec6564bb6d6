"""A ParallelEnv, bare or under transforms, is freed (and its workers stopped) by refcounting alone.

No reference cycle may hold an env: with the cycle collector paused (as tdrl's collectors pause
it while they record a batch) or run rarely, a cycle would keep the workers running until the
next full collection.
"""

from __future__ import annotations

import functools
import gc
import weakref

import pytest

from tdrl.envs import (
    CatFrames,
    Compose,
    DoubleToFloat,
    ObservationNorm,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    TransformedEnv,
)
from tdrl.testing import CountingEnv, FailingEnv


@pytest.fixture
def no_cycle_collector():
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chain() -> Compose:
    return Compose(
        StepCounter(max_steps=5),
        RewardSum(),
        DoubleToFloat(),
        ObservationNorm(loc=0.0, scale=2.0, in_keys=["observation"]),
        CatFrames(N=2, dim=-1, in_keys=["observation"]),
    )


def _use(env) -> None:
    env.set_seed(0)
    env.rollout(4)
    env.rollout(3, policy=lambda td: td.set("action", env.full_action_spec["action"].rand()), break_when_any_done=False)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda env: env, id="bare"),
        pytest.param(lambda env: TransformedEnv(env, StepCounter()), id="one-transform"),
        pytest.param(lambda env: TransformedEnv(env, _chain()), id="compose"),
        pytest.param(lambda env: TransformedEnv(TransformedEnv(env, RewardSum()), _chain()), id="nested"),
        pytest.param(lambda env: env.append_transform(StepCounter()).append_transform(RewardSum()), id="appended"),
    ],
)
def test_del_stops_the_workers_without_the_cycle_collector(no_cycle_collector, wrap):
    env = wrap(ParallelEnv(2, CountingEnv, mp_start_method="fork"))
    base = env
    while isinstance(base, TransformedEnv):
        base = base.base_env
    procs = list(base._procs)
    _use(env)
    ref = weakref.ref(env)
    del env, base
    assert ref() is None, "a reference cycle holds the env"
    for p in procs:
        p.join(10)
    assert not any(p.is_alive() for p in procs)


def test_transforms_of_a_freed_env_are_detached(no_cycle_collector):
    t = StepCounter()
    env = TransformedEnv(SerialEnv(2, CountingEnv), Compose(t))
    assert t.parent is not None
    assert t.container is env.transform
    del env
    assert t.container is None
    assert t.parent is None
    # free again: it can join another chain
    TransformedEnv(CountingEnv(), t)


def test_del_after_a_worker_raised_stops_the_workers(no_cycle_collector):
    env = ParallelEnv(2, functools.partial(FailingEnv, fail_after=2), mp_start_method="fork")
    procs = list(env._procs)
    td = env.rand_step(env.reset())["next"].exclude("reward")
    with pytest.raises(RuntimeError, match="failing on purpose"):
        env.rand_step(td)
    ref = weakref.ref(env)
    del env, td
    assert ref() is None, "a reference cycle holds the env"
    for p in procs:
        p.join(10)
    assert not any(p.is_alive() for p in procs)
