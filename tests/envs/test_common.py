from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import EnvBase
from tdrl.specs import Binary, Bounded, Composite, MultiOneHot, OneHot, Unbounded
from tdrl.testing import CountingEnv, NestedKeyMock


def test_specs_are_composites_under_input_and_output():
    env = CountingEnv(batch_size=[2])
    assert set(env.output_spec.keys()) == {"full_observation_spec", "full_reward_spec", "full_done_spec"}
    assert set(env.input_spec.keys()) == {"full_action_spec", "full_state_spec"}
    assert env.reward_spec.shape == (2, 1)
    assert set(env.done_spec.keys()) == {"done", "terminated", "truncated"}
    assert env.action_key == "action"
    assert env.done_keys == ["done", "terminated", "truncated"]


def test_spec_setter_checks_batch_size():
    env = CountingEnv(batch_size=[4])
    with pytest.raises(ValueError, match=r"batch_size \(4,\)"):
        env.action_spec = Bounded(-1.0, 1.0, shape=(2,))
    with pytest.raises(ValueError, match="batch shape"):
        env.observation_spec = Composite(observation=Unbounded(shape=(3, 1)), shape=(3,))


def test_step_before_reset_message():
    env = CountingEnv()
    with pytest.raises(RuntimeError, match=r"call td = env.reset\(\) first"):
        env.step(TensorDict({"action": torch.zeros(1, dtype=torch.long)}, []))


def test_missing_action_lists_keys():
    env = CountingEnv()
    td = env.reset()
    with pytest.raises(KeyError, match=r"no action entry 'action' \(it has keys \['done', 'observation'"):
        env.step(td)


def test_wrong_action_shape_and_dtype():
    env = CountingEnv()
    td = env.reset()
    td["action"] = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(1,\)"):
        env.step(td)
    td["action"] = torch.zeros(1, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"dtype torch\.float32, expected torch\.int64"):
        env.step(td)


def test_float_action_of_other_precision_is_cast():
    env = NestedKeyMock()
    td = env.reset()
    td["agent", "action"] = torch.ones(2, dtype=torch.float64)
    assert env.step(td)["next", "data", "states"].dtype == torch.float32


def test_rollout_stops_at_done_and_links_steps():
    env = CountingEnv(max_steps=3)
    ro = env.rollout(10)
    assert ro.batch_size == (3,)
    assert torch.equal(ro["observation"][1:], ro["next", "observation"][:-1])
    assert ro["next", "done"][-1].item()


def test_rollout_without_break_resets_done_subenvs():
    env = CountingEnv(max_steps=3, batch_size=[2])
    ro = env.rollout(7, break_when_any_done=False)
    assert ro.batch_size == (2, 7)
    assert ro["observation"][0].squeeze(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert ro["next", "done"].sum().item() == 4


def test_rollout_with_policy_and_callback():
    env = CountingEnv(max_steps=4)
    seen = []

    def policy(td):
        return td.set("action", torch.ones(1, dtype=torch.long)).set("extra", torch.zeros(2))

    ro = env.rollout(10, policy=policy, callback=lambda e, td: seen.append(td["next", "observation"].item()))
    assert ro["extra"].shape == (4, 2)
    assert seen == [1.0, 2.0, 3.0, 4.0]


def test_rollout_from_given_tensordict_and_set_truncated():
    env = CountingEnv(max_steps=50)
    td = env.reset()
    ro = env.rollout(3, auto_reset=False, tensordict=td, set_truncated=True)
    assert ro["next", "truncated"].squeeze(-1).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="auto_reset=False"):
        env.rollout(3, auto_reset=False)
    with pytest.raises(ValueError, match="max_steps"):
        env.rollout(0)


def test_reset_carries_extra_root_entries():
    env = CountingEnv()
    td = env.reset()
    td["hidden"] = torch.ones(3)
    assert "hidden" in env.reset(td).keys()


def test_step_and_maybe_reset():
    env = CountingEnv(max_steps=2, batch_size=[2])
    td = env.reset()
    td, root = env.step_and_maybe_reset(env.rand_action(td))
    td, root = env.step_and_maybe_reset(env.rand_action(root))
    assert td["next", "done"].all()
    assert (root["observation"] == 0).all()
    assert not root["done"].any()


def test_fake_tensordict_structure():
    env = NestedKeyMock(batch_size=[3])
    fake = env.fake_tensordict()
    assert fake.batch_size == (3,)
    assert ("next", "data", "states") in fake.keys(True, True)
    assert ("agent", "action") in fake.keys(True, True)


def test_set_seed_returns_next_seed():
    assert CountingEnv().set_seed(5) == 6


def test_unimplemented_subclass_says_what_to_write():
    class Empty(EnvBase):
        pass

    with pytest.raises(NotImplementedError, match="must implement _reset"):
        Empty().reset()


def test_unbatched_specs_drop_the_batch_dims():
    from tdrl.testing import ContinuousActionMock

    env = ContinuousActionMock(batch_size=[4, 2], action_dim=2)
    spec = env.action_spec_unbatched
    assert spec.shape == (2,)
    assert spec.space.low.shape == (2,)
    assert env.observation_spec_unbatched["observation"].shape == (3,)
    assert env.full_action_spec_unbatched.shape == ()


class _WritesNoDone(EnvBase):
    """A user env whose ``_step`` forgets the done flags (and, on request, returns a plain dict)."""

    def __init__(self, returns: str = "td") -> None:
        super().__init__()
        self.observation_spec = Unbounded(shape=(1,))
        self.action_spec = Unbounded(shape=(1,))
        self.returns = returns

    def _reset(self, tensordict, **kwargs):
        if self.returns == "reset-none":
            return None
        return TensorDict({"observation": torch.zeros(1)}, [])

    def _step(self, tensordict):
        out = {"observation": torch.zeros(1), "reward": torch.zeros(1)}
        if self.returns == "dict":
            return out
        if self.returns == "no-truncated":
            out.update(done=torch.zeros(1, dtype=torch.bool), terminated=torch.zeros(1, dtype=torch.bool))
        if self.returns in ("done-only", "terminated-only", "done-and-truncated"):
            ended = torch.ones(1, dtype=torch.bool)
            for flag in self.returns.replace("-only", "").split("-and-"):
                out[flag] = ended
        return TensorDict(out, [])

    def _set_seed(self, seed):
        pass


def test_step_of_none_says_what_step_takes():
    env = CountingEnv()
    env.reset()
    with pytest.raises(TypeError, match=r"CountingEnv\.step takes a TensorDict holding the action, got None.*rand_"):
        env.step(None)


@pytest.mark.parametrize(
    "call",
    [
        lambda env: env.rollout(3),
        lambda env: env.rand_step(env.reset()),
        lambda env: env.step_and_maybe_reset(env.rand_action(env.reset())),
    ],
    ids=["rollout", "step", "step_and_maybe_reset"],
)
def test_step_output_without_done_names_the_env_the_key_and_the_contract(call):
    env = _WritesNoDone()
    match = r"_WritesNoDone\._step returned no 'done' entry \(it wrote \['observation', 'reward'\]\).*must return"
    with pytest.raises(KeyError, match=match):
        call(env)


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        ("no-truncated", {"done": False, "terminated": False, "truncated": False}),
        ("done-only", {"done": True, "terminated": True, "truncated": False}),
        ("terminated-only", {"done": True, "terminated": True, "truncated": False}),
    ],
)
def test_step_output_missing_done_flags_are_completed_as_torchrl_does(writes, expected):
    env = _WritesNoDone(writes)
    out = env.rand_step(env.reset())["next"]
    assert {flag: out[flag].item() for flag in expected} == expected


def test_step_output_with_done_and_truncated_but_no_terminated_is_ambiguous():
    env = _WritesNoDone("done-and-truncated")
    with pytest.raises(KeyError, match=r"no 'terminated' entry"):
        env.rand_step(env.reset())


def test_step_and_reset_that_return_no_tensordict_say_so():
    env = _WritesNoDone("dict")
    with pytest.raises(TypeError, match=r"_WritesNoDone\._step must return a TensorDict .* got a dict"):
        env.rand_step(env.reset())
    with pytest.raises(TypeError, match=r"_WritesNoDone\._reset must return a TensorDict .* got None"):
        _WritesNoDone("reset-none").reset()


class _ZeroOneActions(EnvBase):
    """An env whose action is a 0/1 vector of the given spec (one-hot, multi-one-hot or binary)."""

    def __init__(self, action_spec, batch_size=()) -> None:
        super().__init__(batch_size=batch_size)
        self.observation_spec = Unbounded(shape=(*self.batch_size, 1))
        self.action_spec = action_spec

    def _reset(self, tensordict, **kwargs):
        return TensorDict({"observation": torch.zeros(*self.batch_size, 1)}, self.batch_size)

    def _step(self, tensordict):
        flags = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        seen = tensordict["action"].float().sum(-1, keepdim=True)
        return TensorDict(
            {"observation": seen, "reward": seen, "done": flags, "terminated": flags, "truncated": flags},
            self.batch_size,
        )

    def _set_seed(self, seed):
        pass


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.uint8])
@pytest.mark.parametrize(
    ("spec", "bad", "good", "match"),
    [
        (lambda d: OneHot(3, dtype=d), [0.2, 0.3, 0.5], [0.0, 0.0, 1.0], "must be one-hot"),
        (lambda d: MultiOneHot([2, 2], dtype=d), [1.0, 0.0, 0.5, 0.5], [1.0, 0.0, 0.0, 1.0], "one-hot in each block"),
        (lambda d: Binary(3, dtype=d), [1.0, 0.7, 0.0], [1.0, 1.0, 0.0], "must hold only 0 and 1"),
    ],
    ids=["onehot", "multionehot", "binary"],
)
def test_float_values_a_zero_one_action_cannot_hold_are_refused(dtype, spec, bad, good, match):
    env = _ZeroOneActions(spec(dtype))
    td = env.reset()
    td["action"] = torch.tensor(bad)
    with pytest.raises(ValueError, match=rf"_ZeroOneActions\.step: action 'action' .*{match}"):
        env.step(td)
    td["action"] = torch.tensor(good)
    stepped = env.step(td)
    assert stepped["action"].dtype == dtype
    assert stepped["action"].tolist() == torch.tensor(good).to(dtype).tolist()


def test_integer_one_hot_of_another_dtype_is_checked_too():
    env = _ZeroOneActions(OneHot(3))  # bool
    td = env.reset()
    td["action"] = torch.tensor([0, 2, 0])  # a cast to bool would turn 2 into True
    with pytest.raises(ValueError, match="must be one-hot"):
        env.step(td)


def test_infinite_values_for_a_batched_binary_action_are_refused():
    # x * x == x held for inf, so a batch of binary actions let an inf through to the cast (inf -> True)
    env = _ZeroOneActions(Binary(2, shape=(3, 2), dtype=torch.bool), batch_size=(3,))
    td = env.reset()
    td["action"] = torch.tensor([[0.0, 1.0], [float("inf"), 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"must hold only 0 and 1, got \[inf, 0\.0\] at batch index \[1\]"):
        env.step(td)


class _StatelessDrift(EnvBase):
    """A stateless env in the pendulum tutorial's style: the input's batch is the env's batch."""

    batch_locked = False

    def __init__(self) -> None:
        super().__init__()
        self.observation_spec = Composite(x=Unbounded(shape=(1,)))
        self.state_spec = self.observation_spec.clone()
        self.action_spec = Bounded(-1.0, 1.0, shape=(1,))

    def _reset(self, tensordict, **kwargs):
        shape = tensordict.shape if tensordict is not None else torch.Size([])
        return TensorDict({"x": torch.zeros(*shape, 1)}, shape)

    def _step(self, tensordict):
        x = tensordict["x"] + tensordict["action"]
        return TensorDict({"x": x, "reward": -x.abs(), "done": torch.zeros_like(x, dtype=torch.bool)}, x.shape[:-1])

    def _set_seed(self, seed):
        pass


def test_non_batch_locked_env_runs_any_input_batch():
    from tdrl.envs.utils import check_env_specs

    env = _StatelessDrift()
    check_env_specs(env)  # its state spec repeats the observation spec, as the tutorial writes it
    start = env.reset(TensorDict({}, [4]))
    assert start["done"].shape == (4, 1)
    stepped = env.rand_step(start)
    assert stepped["action"].shape == (4, 1)
    assert stepped["next", "terminated"].shape == (4, 1)
    rollout = env.rollout(3, auto_reset=False, tensordict=env.reset(TensorDict({}, [5])))
    assert rollout.batch_size == (5, 3)


def test_batch_locked_env_still_refuses_a_batched_action():
    env = CountingEnv()
    td = env.reset()
    td["action"] = torch.ones(4, 1)
    with pytest.raises(ValueError, match="action"):
        env.step(td)


def test_reset_fills_the_given_tensordict_in_place_as_torchrl():
    env = CountingEnv()
    given = TensorDict({"note": torch.ones(1)}, [])
    out = env.reset(given)
    assert out is given
    assert set(out.keys()) >= {"observation", "done", "note"}
    stepped = env.rand_step(env.reset())
    assert env.reset(stepped) is not stepped  # a step's output (with "next") gets a fresh root
