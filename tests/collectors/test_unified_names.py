"""TorchRL's unified collector names: BaseCollector, MultiCollector(sync=...), AsyncCollector."""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import (
    AsyncCollector,
    BaseCollector,
    Collector,
    MultiAsyncCollector,
    MultiCollector,
    MultiSyncCollector,
)
from tdrl.testing import ContinuousActionMock, CountingEnv


def _counting(max_steps: int = 100) -> CountingEnv:
    return CountingEnv(max_steps=max_steps)


def test_every_collector_is_a_base_collector():
    single = Collector(CountingEnv(), None, frames_per_batch=2, total_frames=2)
    background = AsyncCollector(_counting, None, frames_per_batch=2, total_frames=2, mp_start_method="fork")
    try:
        for collector in (single, background):
            assert isinstance(collector, BaseCollector)
        assert isinstance(background, MultiCollector)
        assert isinstance(background, MultiAsyncCollector)
    finally:
        background.shutdown()


@pytest.mark.parametrize(("sync", "cls"), [(True, MultiSyncCollector), (False, MultiAsyncCollector)])
def test_multi_collector_builds_the_class_sync_names(sync, cls):
    collector = MultiCollector(
        [_counting, _counting], None, sync=sync, frames_per_batch=4, total_frames=8, mp_start_method="fork"
    )
    try:
        assert type(collector) is cls
        sizes = [batch.numel() for batch in collector]
        assert sizes == [4, 4]
        assert collector.num_workers == 2
    finally:
        collector.shutdown()


def test_multi_collector_without_sync_says_which_to_pass():
    with pytest.raises(TypeError, match=r"sync=True .*sync=False"):
        MultiCollector([_counting], None, frames_per_batch=2)


def test_a_contradicting_sync_is_refused_before_workers_start():
    with pytest.raises(ValueError, match="collects synchronously but got sync=False"):
        MultiSyncCollector([_counting], None, sync=False, frames_per_batch=2)
    agreeing = MultiSyncCollector([_counting], None, sync=True, frames_per_batch=2, total_frames=2)
    agreeing.shutdown()


def test_async_collector_runs_one_worker_that_counts_on():
    collector = AsyncCollector(
        CountingEnv, None, create_env_kwargs={"max_steps": 100}, frames_per_batch=3, total_frames=9
    )
    try:
        observations = [batch["next", "observation"].squeeze(-1).tolist() for batch in collector]
        assert observations == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
        assert collector.num_workers == 1
    finally:
        collector.shutdown()


def test_async_collector_loads_pushed_weights_before_a_later_batch():
    env = ContinuousActionMock()
    obs_dim, action_dim = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    policy = TensorDictModule(nn.Linear(obs_dim, action_dim), ["observation"], ["action"])
    nn.init.zeros_(policy.module.weight)
    nn.init.constant_(policy.module.bias, 0.25)
    collector = AsyncCollector(ContinuousActionMock, policy, frames_per_batch=2, total_frames=-1)
    try:
        batches = iter(collector)
        assert torch.allclose(next(batches)["action"], torch.full((2, action_dim), 0.25))
        with torch.no_grad():
            policy.module.bias.fill_(-0.5)
        collector.update_policy_weights_()
        # the batch in flight when the weights were pushed may be old; the one after is not
        actions = [next(batches)["action"] for _ in range(2)]
        assert torch.allclose(actions[-1], torch.full((2, action_dim), -0.5))
    finally:
        collector.shutdown()


def test_async_collector_refuses_several_factories():
    with pytest.raises(TypeError, match="use MultiAsyncCollector"):
        AsyncCollector([_counting, _counting], None, frames_per_batch=2)
    with pytest.raises(TypeError, match="drop num_workers"):
        AsyncCollector(_counting, None, num_workers=2, frames_per_batch=2)
