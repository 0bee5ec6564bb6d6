"""RayWeightUpdater with RayCollector's actors, and its push interval."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import RayWeightUpdater

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_cluster(ray_local_runtime):
    return ray_local_runtime


def _zero_policy() -> TensorDictModule:
    net = nn.Linear(3, 2)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    return TensorDictModule(net, in_keys=["observation"], out_keys=["action"])


def test_pushes_reach_ray_collector_actors():
    from tdrl.collectors.distributed import RayCollector
    from tdrl.testing import ContinuousActionMock

    policy = _zero_policy()
    collector = RayCollector(
        ContinuousActionMock, policy, frames_per_batch=4, total_frames=-1, num_collectors=2, sync=True
    )
    try:
        assert (collector.next()["action"] == 0).all()
        trained = _zero_policy()
        updater = RayWeightUpdater(TensorDict.from_module(trained), collector.remote_collectors)
        with torch.no_grad():
            trained.module.bias.fill_(0.5)
        updater()  # the weights it was given, read now
        assert (collector.next()["action"] == 0.5).all()
        other = _zero_policy()
        with torch.no_grad():
            other.module.bias.fill_(-0.25)
        updater(other, worker_ids=[0, 1])  # explicit weights: a module
        assert (collector.next()["action"] == -0.25).all()
    finally:
        collector.shutdown()


class _Recorder:
    """Stands for an actor with TorchRL's update_policy_weights_ (the updater calls .remote on it)."""

    def __init__(self):
        self.calls = []
        outer = self

        class _Method:
            def remote(self, policy_weights):
                outer.calls.append(policy_weights)

        self.update_policy_weights_ = _Method()


def test_max_interval_skips_pushes_per_worker():
    actors = [_Recorder(), _Recorder()]
    updater = RayWeightUpdater(TensorDict.from_module(nn.Linear(2, 1)), actors, max_interval=2)
    for _ in range(6):
        updater()
    assert [len(a.calls) for a in actors] == [2, 2]  # every third call
    assert isinstance(actors[0].calls[0], ray.ObjectRef)
    updater(worker_ids=0)
    updater(worker_ids=0)
    updater(worker_ids=0)
    assert [len(a.calls) for a in actors] == [3, 2]
    with pytest.raises(IndexError, match="not one of the 2 remote collectors"):
        updater._sync_weights_with_worker(worker_id=5, server_weights=None)
