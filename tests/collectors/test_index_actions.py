"""An argmax policy writing action indices for a one-hot action spec: the collector encodes them.

``IdentityEnv`` pays 1 when the one-hot action matches the one-hot observation, so a
policy writing ``observation.argmax(-1)`` collects reward 1 at every step only if its
index reaches the env as the action it names (TorchRL 0.14.1 reads it as one-hot:
``argmax`` of a scalar, action 0 at every step).
"""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.collectors._index_actions import IndexActionEncoder, index_action_specs
from tdrl.specs import Composite, OneHot
from tdrl.testing import IdentityEnv


def _argmax_policy() -> TensorDictModule:
    return TensorDictModule(lambda obs: obs.argmax(-1), in_keys=["observation"], out_keys=["action"])


@pytest.mark.parametrize("batch", [(), (2,)])
def test_index_actions_reach_the_env_as_the_actions_they_name(batch):
    env = IdentityEnv(n=3, batch_size=batch)
    collector = SyncDataCollector(env, _argmax_policy(), frames_per_batch=12, total_frames=24)
    steps = 12 // (batch[0] if batch else 1)
    for data in collector:
        assert torch.all(data["next", "reward"] == 1)
        assert data["action"].shape == (*batch, steps, 3)
        assert torch.equal(data["action"], data["observation"].bool())  # recorded one-hot, as the spec says


def test_one_hot_actions_are_left_alone():
    policy = TensorDictModule(lambda obs: obs.bool(), in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(IdentityEnv(n=3), policy, frames_per_batch=6, total_frames=6)
    data = next(iter(collector))
    assert torch.all(data["next", "reward"] == 1)
    assert collector._loop is not None
    assert not isinstance(collector._loop.policy, IndexActionEncoder)


def test_only_integer_index_shaped_actions_are_encoded():
    from tensordict import TensorDict

    specs = Composite(action=OneHot(3))
    for value, encoded in [
        (torch.tensor(2), True),
        (torch.tensor(2.0), False),  # a float is not an index
        (torch.tensor([0, 0, 1]), False),  # already one-hot shaped
        (torch.tensor(True), False),
    ]:
        found = index_action_specs(TensorDict(action=value), specs, ["action"])
        assert bool(found) is encoded, value


def test_a_wrong_action_shape_is_still_refused():
    policy = TensorDictModule(lambda obs: obs[..., :2], in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(IdentityEnv(n=3), policy, frames_per_batch=6, total_frames=6)
    with pytest.raises(ValueError, match="the policy wrote 'action' with shape"):
        next(iter(collector))
