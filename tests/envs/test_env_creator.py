"""EnvCreator: a checked, picklable env factory for ParallelEnv and the multi-process collectors."""

from __future__ import annotations

import pickle

import pytest
import torch

from tdrl.collectors import MultiSyncDataCollector
from tdrl.envs import EnvCreator, ParallelEnv, SerialEnv
from tdrl.testing import CountingEnv


def test_it_builds_new_envs_with_the_checked_specs():
    creator = EnvCreator(CountingEnv, create_env_kwargs={"max_steps": 3})
    first, second = creator(), creator()
    assert first is not second
    assert creator.observation_spec == first.observation_spec
    assert creator.action_spec == first.action_spec
    assert creator(max_steps=7).max_steps == 7  # a call's kwargs override the creator's
    assert creator.meta_data["batch_size"] == first.batch_size


def test_a_lambda_factory_goes_through_plain_pickle():
    creator = EnvCreator(lambda: CountingEnv(max_steps=2))
    copy = pickle.loads(pickle.dumps(creator))
    assert copy().rollout(5)["next", "observation"].squeeze(-1).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_parallel_env_and_multi_process_collector_take_it(start_method):
    creator = EnvCreator(lambda: CountingEnv(max_steps=4))
    env = ParallelEnv(2, creator, mp_start_method=start_method)
    try:
        reference = SerialEnv(2, creator)
        assert torch.equal(env.rollout(6)["next", "observation"], reference.rollout(6)["next", "observation"])
    finally:
        env.close()
    collector = MultiSyncDataCollector([creator, creator], None, frames_per_batch=8, total_frames=16)
    try:
        assert sum(batch.numel() for batch in collector) == 16
    finally:
        collector.shutdown()


@pytest.mark.parametrize(
    ("factory", "match"),
    [(CountingEnv(), "callable that builds an env"), (42, "callable"), (lambda: "not an env", "returned a str")],
)
def test_what_does_not_build_an_env_is_refused_at_once(factory, match):
    with pytest.raises(TypeError, match=match):
        EnvCreator(factory)


def _normalized_counting_env(new_api: bool):
    from tdrl.envs import TransformedEnv, VecNorm

    return TransformedEnv(CountingEnv(max_steps=50), VecNorm(in_keys=["observation"], decay=1.0, new_api=new_api))


def _count(env, new_api: bool) -> int:
    if new_api:
        return int(env.transform.shared_data["count", "observation"])
    return int(env.transform.stats["observation", "count"].item())


@pytest.mark.parametrize("new_api", [True, False])
@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_parallel_workers_update_the_creators_vec_norm_statistics(new_api, start_method):
    import functools

    creator = EnvCreator(functools.partial(_normalized_counting_env, new_api))
    local = creator()  # built in this process: it reads what the workers write
    env = ParallelEnv(2, creator, mp_start_method=start_method)
    try:
        env.rollout(5, break_when_any_done=False)
    finally:
        env.close()
    assert _count(local, new_api) == 12  # two workers, each one reset + five steps
    assert _count(creator(), new_api) == 12


def test_multi_process_collector_workers_share_the_statistics():
    import functools

    creator = EnvCreator(functools.partial(_normalized_counting_env, True))
    local = creator()
    collector = MultiSyncDataCollector([creator, creator], None, frames_per_batch=8, total_frames=16)
    try:
        frames = sum(batch.numel() for batch in collector)
    finally:
        collector.shutdown()
    assert frames == 16
    assert _count(local, True) >= 16  # every collected step (and the resets) went into one set of statistics


def test_share_memory_false_keeps_statistics_apart():
    import functools

    creator = EnvCreator(functools.partial(_normalized_counting_env, True), share_memory=False)
    first, second = creator(), creator()
    first.rollout(3)
    assert _count(first, True) == 4
    assert _count(second, True) == 0


def test_variant_shares_statistics_and_overrides_kwargs():
    from tdrl.envs import TransformedEnv, VecNormV2

    def make(max_steps=50):
        return TransformedEnv(CountingEnv(max_steps=max_steps), VecNormV2(in_keys=["observation"]))

    creator = EnvCreator(make)
    variant = creator.make_variant(max_steps=7)
    env = variant()
    assert env.base_env.max_steps == 7
    env.rollout(2)
    assert _count(creator(), True) == 3
