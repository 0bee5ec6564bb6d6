"""Weight updaters: what they copy where, and collectors delegating update_policy_weights_ to them."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import (
    Collector,
    MultiProcessedWeightUpdater,
    MultiSyncCollector,
    VanillaWeightUpdater,
    WeightUpdaterBase,
)
from tdrl.testing import ContinuousActionMock


def _policy(bias: float) -> TensorDictModule:
    env = ContinuousActionMock()
    net = nn.Sequential(nn.Linear(env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]))
    nn.init.zeros_(net[0].weight)
    nn.init.constant_(net[0].bias, bias)
    return TensorDictModule(net, ["observation"], ["action"])


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)

    class RecordingUpdater(WeightUpdaterBase):
        """Records each worker it is asked to update."""

        def __init__(self) -> None:
            self.calls: list = []

        def all_worker_ids(self):
            return [0, 1]

        def _sync_weights_with_worker(self, *, worker_id=None, server_weights):
            self.calls.append((worker_id, sorted(server_weights.keys(include_nested=True, leaves_only=True))))


def test_vanilla_updater_writes_into_the_collectors_policy():
    policy, trained = _policy(0.0), _policy(0.5)
    collector = Collector(
        ContinuousActionMock(), policy, frames_per_batch=2, weight_updater=VanillaWeightUpdater.from_policy(policy)
    )
    collector.update_policy_weights_(trained)
    torch.testing.assert_close(collector.next()["action"], torch.full_like(collector.next()["action"], 0.5))
    collector.update_policy_weights_(_policy(-0.25).state_dict())  # a state_dict with dotted keys
    assert torch.allclose(policy.module[0].bias, torch.tensor(-0.25))
    assert collector.weight_updater.collector is collector


def test_vanilla_updater_asks_its_getter_when_given_nothing():
    policy, trained = _policy(0.0), _policy(2.0)
    updater = VanillaWeightUpdater(
        weight_getter=lambda: TensorDict.from_module(trained), policy_weights=TensorDict.from_module(policy)
    )
    updater()
    assert torch.equal(policy.module[0].bias, trained.module[0].bias)


def test_multi_processed_updater_updates_each_copy_and_names_unknown_workers():
    trained = _policy(1.0)
    copies = {"a": _policy(0.0), "b": _policy(0.0)}
    updater = MultiProcessedWeightUpdater(
        get_server_weights=None, policy_weights={k: TensorDict.from_module(m) for k, m in copies.items()}
    )
    updater(trained, worker_ids=["b"])
    assert copies["b"].module[0].bias.eq(1.0).all()
    assert copies["a"].module[0].bias.eq(0.0).all()
    with pytest.raises(KeyError, match="no weights for worker 'c'"):
        updater(trained, worker_ids=["c"])


def test_a_collector_hands_worker_ids_and_runs_post_hooks():
    updater = RecordingUpdater()
    updater.register_post_hook(lambda: updater.calls.append("hook"))
    collector = Collector(ContinuousActionMock(), _policy(0.0), frames_per_batch=2, weight_updater=lambda: updater)
    collector.update_policy_weights_(_policy(1.0), worker_ids=1)
    assert updater.calls == [(1, [("module", "0", "bias"), ("module", "0", "weight")]), "hook"]
    updater.calls.clear()
    collector.update_policy_weights_(TensorDict({"w": torch.zeros(1)}))
    assert [call[0] for call in updater.calls[:-1]] == [0, 1]


def test_a_multi_process_collector_delegates_to_its_updater():
    updater = RecordingUpdater()
    policy = _policy(0.0)
    collector = MultiSyncCollector(
        [ContinuousActionMock], policy, frames_per_batch=2, mp_start_method="fork", weight_updater=updater
    )
    try:
        collector.update_policy_weights_(policy)
        assert [call[0] for call in updater.calls] == [0, 1]
        assert updater.collector is collector
    finally:
        collector.shutdown()


def test_worker_ids_need_an_updater_and_updaters_are_checked():
    collector = Collector(ContinuousActionMock(), _policy(0.0), frames_per_batch=2)
    with pytest.raises(TypeError, match="worker_ids= needs a weight_updater"):
        collector.update_policy_weights_(worker_ids=[0])
    with pytest.raises(TypeError, match="must be a WeightUpdaterBase"):
        Collector(ContinuousActionMock(), None, frames_per_batch=2, weight_updater=3)
    with pytest.raises(TypeError, match="got int"):
        VanillaWeightUpdater.from_policy(_policy(0.0))(3)


def test_subclassing_outside_tdrl_warns_as_torchrl_does():
    with pytest.warns(DeprecationWarning, match="TorchRL deprecates"):

        class Mine(WeightUpdaterBase):
            def _sync_weights_with_worker(self, *, worker_id=None, server_weights):
                pass


def test_vanilla_updater_copies_what_torchrls_copies():
    collectors = pytest.importorskip("torchrl.collectors")
    trained = _policy(0.75)
    ours_policy, theirs_policy = _policy(0.0), _policy(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = collectors.VanillaWeightUpdater(policy_weights=TensorDict.from_module(theirs_policy))
    with torch.no_grad():  # TorchRL's collectors call it so; tdrl's updater copies without grad by itself
        theirs(TensorDict.from_module(trained).data)
    VanillaWeightUpdater.from_policy(ours_policy)(TensorDict.from_module(trained).data)
    for mine, reference in zip(ours_policy.parameters(), theirs_policy.parameters()):
        assert torch.equal(mine, reference)


def test_remote_module_updater_needs_weights():
    from tdrl.collectors import RemoteModuleWeightUpdater

    updater = RemoteModuleWeightUpdater()
    updater(TensorDict({"w": torch.zeros(1)}))  # given weights: accepted
    with pytest.raises(RuntimeError, match="weights must be passed explicitly"):
        updater()
