"""A recurrent policy's hidden state is carried step to step and reset to the primer's value at episode ends.

For every road (env.rollout, SyncDataCollector, the multi-process collectors, batched envs
with the primer inside or outside): the input state at step t is the output at t-1 within
an episode, and the primer's value at the first step of an episode.
"""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import MultiaSyncDataCollector, MultiSyncDataCollector, SyncDataCollector
from tdrl.envs import Compose, InitTracker, ParallelEnv, SerialEnv, TensorDictPrimer, TransformedEnv
from tdrl.modules import GRUModule, LSTMModule
from tdrl.specs import Unbounded
from tdrl.testing import ContinuousActionMock

HIDDEN = 4
PRIMER_VALUE = 0.5  # not zero, so that a reset to zero instead of the primer's value is caught


def _primer() -> TensorDictPrimer:
    return TensorDictPrimer(
        {"recurrent_state": Unbounded(shape=(1, HIDDEN))}, default_value=PRIMER_VALUE, expand_specs=True
    )


def _base(max_steps: int = 3) -> ContinuousActionMock:
    return ContinuousActionMock(obs_dim=3, action_dim=2, max_steps=max_steps)


def _primed(max_steps: int = 3) -> TransformedEnv:
    return TransformedEnv(_base(max_steps), Compose(InitTracker(), _primer()))


def _make_env(where: str) -> TransformedEnv | SerialEnv:
    if where == "single":
        return _primed()
    if where == "serial-inside":
        return SerialEnv(2, _primed)
    if where == "parallel-inside":
        return ParallelEnv(2, _primed)
    return TransformedEnv(SerialEnv(2, _base), Compose(InitTracker(), _primer()))


def _policy(seed: int = 0) -> TensorDictSequential:
    torch.manual_seed(seed)
    gru = GRUModule(input_size=3, hidden_size=HIDDEN, in_key="observation", out_key="features")
    head = TensorDictModule(nn.Sequential(nn.Linear(HIDDEN, 2), nn.Tanh()), ["features"], ["action"])
    return TensorDictSequential(gru, head)


def _check_carried(data: TensorDictBase) -> None:
    steps = data.batch_size[-1]
    data = data.reshape(-1, steps)
    h_in = data["recurrent_state"]
    h_out = data["next", "recurrent_state"]
    starts = data["is_init"].reshape(data.batch_size)
    assert starts[:, 1:].any(), "the batch should hold an episode end"
    # every step's output is the module's new state, not a copy of its input
    assert (h_out != h_in).flatten(2).any(-1).all()
    for t in range(1, steps):
        within = ~starts[:, t]
        torch.testing.assert_close(h_in[:, t][within], h_out[:, t - 1][within], rtol=0, atol=0)
        assert torch.all(h_in[:, t][starts[:, t]] == PRIMER_VALUE)
    assert torch.all(h_in[:, 0][starts[:, 0]] == PRIMER_VALUE)


@pytest.mark.parametrize("where", ["single", "serial-inside", "serial-outside", "parallel-inside"])
def test_rollout_carries_and_resets_the_state(where: str) -> None:
    env = _make_env(where)
    try:
        _check_carried(env.rollout(8, _policy(), break_when_any_done=False))
    finally:
        env.close()


@pytest.mark.parametrize("where", ["single", "serial-inside", "serial-outside", "parallel-inside"])
def test_sync_collector_carries_and_resets_the_state(where: str) -> None:
    collector = SyncDataCollector(_make_env(where), _policy(), frames_per_batch=16 if where == "single" else 32)
    try:
        for i, data in enumerate(collector):
            _check_carried(data)
            if i == 1:  # the second batch starts from the first one's last root
                break
    finally:
        collector.shutdown()


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_multi_collectors_carry_and_reset_the_state(cls: type) -> None:
    collector = cls([_primed, _primed], _policy(), frames_per_batch=16, total_frames=32)
    try:
        for data in collector:
            _check_carried(data)
    finally:
        collector.shutdown()


def test_rollout_state_is_what_the_module_computes() -> None:
    """The carried state is the module's own output: stepping by hand gives the same outputs."""
    env = TransformedEnv(_base(max_steps=50), InitTracker())
    lstm = LSTMModule(input_size=3, hidden_size=HIDDEN, in_key="observation", out_key="features")
    env.append_transform(lstm.make_tensordict_primer())
    policy = TensorDictSequential(
        lstm, TensorDictModule(nn.Sequential(nn.Linear(HIDDEN, 2), nn.Tanh()), ["features"], ["action"])
    )
    env.set_seed(0)
    data = env.rollout(5, policy)
    h = c = torch.zeros(1, 1, HIDDEN)
    with torch.no_grad():
        for t in range(5):
            y, (h, c) = lstm.lstm(data["observation"][t].reshape(1, 1, 3), (h, c))
            torch.testing.assert_close(data["features"][t], y.reshape(HIDDEN).detach())
            torch.testing.assert_close(data["next", "recurrent_state_h"][t], h.reshape(1, HIDDEN))


def test_a_recurrent_policy_without_its_primer_is_refused() -> None:
    env = TransformedEnv(_base(), InitTracker())
    with pytest.raises(ValueError, match=r"env.append_transform\(module.make_tensordict_primer\(\)\)"):
        env.rollout(3, _policy())
    with pytest.raises(ValueError, match="SyncDataCollector: the policy's GRUModule reads its hidden state"):
        next(iter(SyncDataCollector(env, _policy(), frames_per_batch=4)))


def test_primer_shapes_that_miss_the_batch_dims_are_refused() -> None:
    with pytest.raises(ValueError, match="expand_specs=True"):
        TransformedEnv(SerialEnv(2, functools.partial(_base, 3)), TensorDictPrimer(h=Unbounded(shape=(1, HIDDEN))))
