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
