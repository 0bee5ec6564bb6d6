"""TorchRL's spec aliases and helpers in tdrl.data, and prefill_replay_buffer."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data import (
    BoundedContinuous,
    LazyTensorStorage,
    ReplayBuffer,
    UnboundedContinuous,
    UnboundedDiscrete,
    check_no_exclusive_keys,
    consolidate_spec,
    contains_lazy_spec,
    prefill_replay_buffer,
)
from tdrl.specs import Bounded, Composite, Unbounded


def test_aliases_build_the_specs_torchrl_describes():
    bounded = BoundedContinuous(-1.0, 1.0, shape=(2,))
    assert isinstance(bounded, Bounded)
    assert bounded.dtype == torch.float32
    assert isinstance(UnboundedContinuous(shape=(3,)), Unbounded)
    discrete = UnboundedDiscrete(shape=(2,))
    assert isinstance(discrete, Unbounded)
    assert discrete.dtype == torch.int64
    assert discrete.rand().dtype == torch.int64


def test_aliases_match_torchrl_dtypes():
    torchrl_data = pytest.importorskip("torchrl.data")
    assert UnboundedDiscrete(shape=(2,)).dtype == torchrl_data.UnboundedDiscrete(shape=(2,)).dtype
    assert UnboundedContinuous(shape=(2,)).dtype == torchrl_data.UnboundedContinuous(shape=(2,)).dtype


def test_lazy_spec_helpers_on_tdrl_specs():
    spec = Composite(obs=Unbounded(shape=(3,)), nested=Composite(x=Unbounded(shape=(1,))))
    consolidated = consolidate_spec(spec)
    assert consolidated == spec
    assert consolidated is not spec
    assert contains_lazy_spec(spec) is False
    assert check_no_exclusive_keys(spec) is True
    for helper in (consolidate_spec, contains_lazy_spec, check_no_exclusive_keys):
        with pytest.raises(TypeError, match="expected a tdrl TensorSpec or Composite, got a dict"):
            helper({"obs": 1})


def _filled(n):
    rb = ReplayBuffer(storage=LazyTensorStorage(n))
    rb.extend(TensorDict({"obs": torch.arange(n, dtype=torch.float32).unsqueeze(-1)}, [n]))
    return rb


def test_prefill_copies_samples_in_chunks():
    offline = _filled(50)
    online = ReplayBuffer(storage=LazyTensorStorage(500))
    assert prefill_replay_buffer(online, offline, n_samples=33, chunk_size=10) is online
    assert len(online) == 33
    assert set(online[:]["obs"].flatten().tolist()) <= set(range(50))
    assert len(prefill_replay_buffer(ReplayBuffer(storage=LazyTensorStorage(500)), offline)) == 50


def test_prefill_refuses_names_and_bad_sizes():
    online = ReplayBuffer(storage=LazyTensorStorage(10))
    with pytest.raises(TypeError, match="tdrl ships no offline dataset loaders"):
        prefill_replay_buffer(online, "minari:pen-v0")
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        prefill_replay_buffer(online, _filled(5), chunk_size=0)
    with pytest.raises(TypeError, match="must be a replay buffer"):
        prefill_replay_buffer(online, [1, 2])
