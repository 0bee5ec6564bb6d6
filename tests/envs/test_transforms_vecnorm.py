"""VecNormV2 and RunningMeanStd: the contract, the formula, the modes, errors and sharing between processes."""

from __future__ import annotations

import functools
import math
import pickle

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import ParallelEnv, TransformedEnv, VecNorm, VecNormV2
from tdrl.envs.transforms import ObservationNorm, RunningMeanStd
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TestVecNormV2(TransformContractTests):
    forward_matches_env = False  # statistics move at every call

    def make_transform(self):
        return VecNormV2(in_keys=["observation", "reward"], decay=0.99)


class TestVecNormV2ReduceBatch(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return VecNormV2(in_keys=["observation"], out_keys=["obs_norm"], reduce_batch_dims=True)


class TestVecNormV2Stateless(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return VecNormV2(in_keys=["observation", "reward"], stateful=False, decay=0.9)


def test_new_api_dispatches_and_default_stays_vec_norm():
    assert type(VecNorm(in_keys=["observation"], new_api=True)) is VecNormV2
    assert type(VecNorm(in_keys=["observation"], new_api=False)) is VecNorm
    assert type(VecNorm(in_keys=["observation"])) is VecNorm


def test_formula_with_bias_correction():
    decay = 0.9
    vn = VecNormV2(in_keys=["x"], decay=decay)
    values = [1.0, 3.0, -2.0]
    for v in values:
        out = vn(TensorDict({"x": torch.tensor([v])}))["x"]
    loc = var = 0.0
    for v in values:
        loc, var = loc + (1 - decay) * (v - loc), var + (1 - decay) * (v * v - var)
    correction = 1 - decay ** len(values)
    mean, std = loc / correction, math.sqrt((var - loc * loc) / correction)
    assert out.item() == pytest.approx((values[-1] - mean) / std, rel=1e-5)
    assert vn.loc["x"].item() == pytest.approx(mean, rel=1e-5)
    assert vn.scale["x"].item() == pytest.approx(std, rel=1e-5)


def test_decay_one_is_the_plain_average():
    vn = VecNormV2(in_keys=["x"], decay=1.0)
    data = torch.tensor([[0.0], [2.0], [4.0], [10.0]])
    for row in data:
        vn(TensorDict({"x": row}))
    assert vn.loc["x"].item() == pytest.approx(4.0)
    assert vn.scale["x"].item() == pytest.approx(data.std(unbiased=False).item(), rel=1e-5)


def test_freeze_unfreeze_and_frozen_copy():
    vn = VecNormV2(in_keys=["x"], decay=1.0)
    vn(TensorDict({"x": torch.tensor([1.0])}))
    vn(TensorDict({"x": torch.tensor([3.0])}))
    frozen = vn.frozen_copy()
    vn.freeze()
    vn(TensorDict({"x": torch.tensor([100.0])}))
    assert vn.loc["x"].item() == pytest.approx(2.0)
    vn.unfreeze()(TensorDict({"x": torch.tensor([5.0])}))
    assert vn.loc["x"].item() == pytest.approx(3.0)
    assert frozen.frozen
    assert frozen.loc["x"].item() == pytest.approx(2.0)  # a snapshot


def test_to_observation_norm_one_key_and_compose():
    env = TransformedEnv(TransformTestEnv(), VecNormV2(in_keys=["observation", "reward"], decay=0.9))
    env.rollout(6)
    single = VecNormV2(in_keys=["x"], decay=0.9)
    single(TensorDict({"x": torch.tensor([1.0, 2.0])}))
    assert isinstance(single.to_observation_norm(), ObservationNorm)
    norms = env.transform.to_observation_norm()
    assert len(norms) == 2
    td = env.base_env.rollout(3, break_when_any_done=False)["next"]
    expected = (td["observation"] - env.transform.loc["observation"]) / env.transform.scale["observation"]
    torch.testing.assert_close(norms(td.clone())["observation"], expected)


def test_stateless_carries_statistics_and_restarts_at_reset():
    env = TransformedEnv(TransformTestEnv(p_end=0.0, max_steps=50), VecNormV2(in_keys=["observation"], stateful=False))
    ro = env.rollout(4)
    counts = ro["next", "_vecnorm_count", "observation"][:, 0]
    assert counts.tolist() == [2, 3, 4, 5]  # the reset counts once
    assert env.reset()["_vecnorm_count", "observation"].unique().tolist() == [1]
    assert "_vecnorm_loc" in env.observation_spec.keys()
    assert env.transform.state_dict() == {"_extra_state": {}}  # no statistics in the transform


def test_stateless_only_methods_raise():
    vn = VecNormV2(in_keys=["observation"], stateful=False)
    for call in (lambda: vn.loc, vn.frozen_copy, vn.to_observation_norm, vn.share_memory_):
        with pytest.raises(RuntimeError, match="stateful=True"):
            call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decay": 0.0}, r"decay must be in \(0, 1\]"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"stateful": False, "reduce_batch_dims": True}, "need stateful=True"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VecNormV2(in_keys=["x"], **kwargs)


def test_uninitialized_loc_raises():
    with pytest.raises(RuntimeError, match="do not exist yet"):
        _ = VecNormV2(in_keys=["x"]).loc


def test_state_dict_round_trip_and_clone():
    env = TransformedEnv(TransformTestEnv(), VecNormV2(in_keys=["observation"], decay=0.95))
    env.rollout(5)
    fresh = TransformedEnv(TransformTestEnv(), VecNormV2(in_keys=["observation"], decay=0.95))
    fresh.load_state_dict(env.state_dict())
    torch.testing.assert_close(fresh.transform.loc["observation"], env.transform.loc["observation"])
    clone = env.transform.clone()
    env.rollout(3)
    assert not torch.equal(clone.loc["observation"], env.transform.loc["observation"])


def test_pickled_shared_copy_updates_the_same_statistics():
    vn = VecNormV2(in_keys=["x"], decay=1.0).share_memory_()
    vn(TensorDict({"x": torch.tensor([1.0])}))
    copy = pickle.loads(pickle.dumps(vn))
    copy(TensorDict({"x": torch.tensor([3.0])}))
    assert int(vn.shared_data["count", "x"]) == 2
    assert vn.loc["x"].item() == pytest.approx(2.0)


def _env_with(vn):
    return TransformedEnv(TransformTestEnv(p_end=0.0, max_steps=100), vn)


def test_shared_with_parallel_env_workers():
    vn = VecNormV2(in_keys=["observation"], decay=1.0)
    _env_with(vn)  # attaching builds the statistics from the specs
    vn.share_memory_()
    env = ParallelEnv(2, functools.partial(_env_with, vn), mp_start_method="fork")
    try:
        env.rollout(5, break_when_any_done=False)
    finally:
        env.close()
    assert int(vn.shared_data["count", "observation"]) == 12  # both workers: one reset + 5 steps each


def test_running_mean_std_is_exact_and_checks_shapes():
    rms = RunningMeanStd(shape=(2,), epsilon=0.0)
    data = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    for chunk in data.split([1, 7, 32]):
        rms.update(chunk)
    torch.testing.assert_close(rms.mean, data.mean(0))
    torch.testing.assert_close(rms.var, data.var(0, unbiased=False))
    assert "mean" in rms.state_dict()
    with pytest.raises(ValueError, match=r"does not end with the tracked shape \(2,\)"):
        rms.update(torch.zeros(4, 3))
