"""BurnInTransform: the burnt-in state equals running the recurrent module over the first steps."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import BurnInTransform, Compose, StepCounter, TransformedEnv
from tdrl.modules import GRUModule, LSTMModule
from tdrl.testing import CountingEnv


def _gru():
    torch.manual_seed(0)
    return GRUModule(
        input_size=3,
        hidden_size=4,
        in_keys=["observation", "hidden"],
        out_keys=["features", ("next", "hidden")],
        default_recurrent_mode=True,
    )


def _data(b=2, t=7):
    torch.manual_seed(1)
    return TensorDict(
        {
            "observation": torch.randn(b, t, 3),
            "hidden": torch.randn(b, t, 1, 4),
            "is_init": torch.zeros(b, t, 1, dtype=torch.bool),
        },
        [b, t],
    )


def test_state_is_the_gru_state_after_the_burnt_in_steps():
    gru = _gru()
    data = _data()
    before = data.clone()
    out = BurnInTransform([gru], burn_in=3)(data)
    assert out.batch_size == (2, 4)
    assert (data == before).all()  # the input is not modified
    x = data["observation"][:, :3]
    h0 = data["hidden"][:, 0].transpose(0, 1).contiguous()  # [layers, B, H]
    _, h = gru.gru(x, h0)
    torch.testing.assert_close(out["hidden"][:, 0], h.transpose(0, 1))
    torch.testing.assert_close(out["hidden"][:, 1:], data["hidden"][:, 4:])
    torch.testing.assert_close(out["observation"], data["observation"][:, 3:])


def test_lstm_refreshes_both_states_and_zero_burn_in_is_identity():
    lstm = LSTMModule(
        input_size=3,
        hidden_size=2,
        in_keys=["observation", "h", "c"],
        out_keys=["y", ("next", "h"), ("next", "c")],
        default_recurrent_mode=True,
    )
    t = BurnInTransform(lstm, burn_in=2)
    assert t.out_keys == ["h", "c"]
    data = TensorDict(
        {
            "observation": torch.randn(3, 5, 3),
            "h": torch.zeros(3, 5, 1, 2),
            "c": torch.zeros(3, 5, 1, 2),
            "is_init": torch.zeros(3, 5, 1, dtype=torch.bool),
        },
        [3, 5],
    )
    out = t(data)
    assert out["h"][:, 0].abs().sum() > 0
    assert out["c"][:, 0].abs().sum() > 0
    assert BurnInTransform(lstm, burn_in=0)(data) is data


def test_in_a_replay_buffer_with_slices():
    from tdrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

    gru = _gru()
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(100), sampler=SliceSampler(num_slices=2, traj_key="traj"), batch_size=12
    )
    data = _data(1, 40).reshape(-1)
    data["traj"] = torch.arange(40) // 20
    rb.extend(data)
    burn = BurnInTransform([gru], burn_in=2)
    sample = rb.sample().reshape(2, 6)
    assert burn(sample).batch_size == (2, 4)


def test_refuses_envs_short_data_and_bad_modules():
    with pytest.raises(ValueError, match="replay buffer"):
        TransformedEnv(CountingEnv(), Compose(StepCounter(), BurnInTransform([_gru()], burn_in=1)))
    with pytest.raises(ValueError, match="T > burn_in=7"):
        BurnInTransform([_gru()], burn_in=7)(_data())
    with pytest.raises(ValueError, match="TensorDictModules"):
        BurnInTransform([torch.nn.GRU(3, 4)], burn_in=1)
    with pytest.warns(UserWarning, match="names the next step"):
        assert BurnInTransform([_gru()], burn_in=1, out_keys=[("next", "hidden")]).out_keys == ["hidden"]
