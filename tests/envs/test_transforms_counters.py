"""TrajCounter and Timer: contract, ids across resets and clones, time entries, errors."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import Compose, SerialEnv, StepCounter, Timer, TrajCounter, TransformedEnv, check_env_specs
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class _EnvOnly:
    """The mixin's tests of a transform called on stored data, turned into: the call is refused."""

    forward_matches_env = False

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:  # type: ignore[override]
        raw = TransformTestEnv().rollout(3)
        with pytest.raises(RuntimeError, match="attach it to the env"):
            self.make_transform()(raw)  # type: ignore[attr-defined]

    def test_in_replay_buffer(self) -> None:  # type: ignore[override]
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        rb = rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(10), transform=self.make_transform(), batch_size=2)  # type: ignore[attr-defined]
        rb.extend(TransformTestEnv().rollout(4, break_when_any_done=False))
        with pytest.raises(RuntimeError, match="attach it to the env"):
            rb.sample()


class TestTrajCounter(_EnvOnly, TransformContractTests):
    def make_transform(self):
        return TrajCounter()


class TestTimer(_EnvOnly, TransformContractTests):
    def make_transform(self):
        return Timer()

    @pytest.mark.parametrize("batched", [False, True])
    def test_rollout_roads_agree(self, batched: bool) -> None:  # type: ignore[override]
        # times differ from run to run: both roads give the same entries, of the same shapes
        fast, stepped, env = self._rollouts(batched)
        assert set(fast.keys(True, True)) == set(stepped.keys(True, True))
        for key in ("time_step", "time_policy", "time_reset"):
            assert fast[key].shape == stepped[key].shape == fast["done"].shape[:-1]
        env.close()


# --- TrajCounter ---------------------------------------------------------------------------------------------------


def test_each_trajectory_gets_the_next_id():
    env = TransformedEnv(CountingEnv(max_steps=3), TrajCounter())
    ro = env.rollout(8, break_when_any_done=False)
    assert ro["traj_count"].squeeze(-1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert torch.equal(ro["next", "traj_count"], ro["traj_count"])
    assert env.observation_spec["traj_count"].dtype == torch.int64


def test_partial_resets_take_ids_only_for_the_sub_envs_reset():
    env = TransformedEnv(TransformTestEnv(batch_size=[3]), TrajCounter())
    env.set_seed(0)
    ro = env.rollout(12, break_when_any_done=False)
    ids, done = ro["traj_count"].squeeze(-1), ro["next", "done"].squeeze(-1)
    assert ids[:, 0].tolist() == [0, 1, 2]
    # within a sub-env the id changes exactly after a done, and no id is used by two sub-envs
    for b in range(3):
        changes = (ids[b, 1:] != ids[b, :-1]).tolist()
        assert changes == done[b, :-1].tolist()
    per_env = [set(ids[b].tolist()) for b in range(3)]
    assert not (per_env[0] & per_env[1])
    assert not (per_env[1] & per_env[2])
    assert not (per_env[0] & per_env[2])
    assert sorted(set().union(*per_env)) == list(range(int(ids.max()) + 1))


def test_clones_share_the_counter_and_copies_do_not():
    t = TrajCounter()
    a = TransformedEnv(CountingEnv(max_steps=2), t.clone())
    b = TransformedEnv(CountingEnv(max_steps=2), t.clone())
    first = a.rollout(4, break_when_any_done=False)["traj_count"].squeeze(-1).tolist()
    second = b.rollout(4, break_when_any_done=False)["traj_count"].squeeze(-1).tolist()
    assert first == [0, 0, 1, 1]
    assert second == [2, 2, 3, 3]
    copied = copy.deepcopy(t)
    assert pickle.loads(pickle.dumps(t)).state_dict()["traj_count"].item() == 4
    copied_env = TransformedEnv(CountingEnv(max_steps=2), copied)
    assert copied_env.rollout(1)["traj_count"].item() == 4
    assert a.rollout(1)["traj_count"].item() == 4  # the copy's ids do not move the shared counter


def test_state_dict_restores_the_count():
    env = TransformedEnv(CountingEnv(max_steps=2), TrajCounter())
    env.rollout(5, break_when_any_done=False)
    state = env.state_dict()
    assert state["transform.traj_count"].item() == 3
    other = TransformedEnv(CountingEnv(max_steps=2), TrajCounter())
    other.load_state_dict(state)
    assert other.rollout(1)["traj_count"].item() == 3


def test_serial_env_sub_envs_get_distinct_ids():
    t = TrajCounter()
    env = SerialEnv(2, [lambda: TransformedEnv(CountingEnv(max_steps=2), t.clone())] * 2)
    ro = env.rollout(4, break_when_any_done=False)
    assert ro["traj_count"].squeeze(-1).tolist() == [[0, 0, 2, 2], [1, 1, 3, 3]]
    env.close()


def test_nested_out_key_without_matching_done_is_refused():
    with pytest.raises(KeyError, match=r"\('agents', 'done'\).*Fix"):
        TransformedEnv(CountingEnv(), TrajCounter(("agents", "traj_count")))


def test_step_before_reset_is_refused():
    env = TransformedEnv(CountingEnv(), TrajCounter())
    td = TensorDict({"observation": torch.zeros(1), "action": torch.ones(1)}, [])
    with pytest.raises(RuntimeError, match="before a reset"):
        env.transform._step(td, TensorDict({}, []))


def test_traj_counter_is_carried_state():
    from tdrl.envs import RenameTransform

    with pytest.raises(ValueError, match="traj_count"):
        TransformedEnv(CountingEnv(), Compose(TrajCounter(), RenameTransform(["traj_count"], ["tc"])))


# --- Timer ---------------------------------------------------------------------------------------------------------


def test_timer_writes_step_policy_and_reset_times():
    env = TransformedEnv(TransformTestEnv(batch_size=[2]), Compose(StepCounter(), Timer(time_key="t")))
    check_env_specs(env)
    ro = env.rollout(4, lambda td: env.rand_action(td), break_when_any_done=False)
    assert ro["t_step"].shape == (2, 4)
    assert bool((ro["next", "t_step"] > 0).all())
    assert bool((ro["next", "t_policy"] >= 0).all())
    assert bool((ro["next", "t_reset"] == 0).all())
    assert bool((ro["t_reset"][:, 0] > 0).all())
    assert bool((ro["t_step"][:, 0] == 0).all())
    assert ro["t_step"].dtype == torch.get_default_dtype()


def test_timer_needs_three_out_keys():
    with pytest.raises(TypeError, match="three keys"):
        Timer(out_keys=["a", "b"])
    t = Timer(out_keys=["s", ("timing", "p"), "r"])
    assert t.time_policy_key == ("timing", "p")
