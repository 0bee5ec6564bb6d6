"""``env.rollout`` with a policy: the per-step fast paths give the general path's result.

- ``next_root`` builds the next step's root in one pass when ``"next"`` holds tensors only;
  every other layout goes through ``step_mdp``: both must give the same entries, in the
  same order, sharing the same tensors.
- ``_StepWriter`` writes a step's CPU entries through numpy; with numpy views refused
  (``_numpy_view`` returning None), every entry goes through ``select().copy_``; with the
  writer refused, every step goes through TensorDict indexing: the rollouts must be equal,
  dtypes and autograd flags included, and a step laid out unlike the first must behave as
  TensorDict indexing does.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import LazyStackedTensorDict, TensorDict, TensorDictBase
from torch import nn

import tdrl.envs._env_rollout as env_rollout
from tdrl.envs import TransformedEnv
from tdrl.envs._env_rollout import next_root
from tdrl.envs.transforms import DoubleToFloat, StepCounter
from tdrl.envs.utils import step_mdp
from tdrl.testing import ContinuousActionMock, CountingEnv, NestedKeyMock


def _same(a: TensorDictBase, b: TensorDictBase) -> None:
    assert type(a) is type(b)
    assert a.batch_size == b.batch_size
    assert a.device == b.device
    assert list(a.keys(True, True)) == list(b.keys(True, True))
    for key in a.keys(True, True):
        if type(a) is TensorDict:
            assert a.get(key) is b.get(key), key  # shared, as step_mdp shares them
        else:  # a lazy stack stacks its entries at each get
            assert torch.equal(a.get(key), b.get(key)), key


def _stepped(**root_extra) -> TensorDict:
    td = TensorDict({"observation": torch.zeros(2, 3), "action": torch.ones(2, 1), **root_extra}, [2])
    td["next"] = TensorDict(
        {
            "observation": torch.ones(2, 3),
            "reward": torch.ones(2, 1),
            "done": torch.zeros(2, 1, dtype=torch.bool),
            "terminated": torch.zeros(2, 1, dtype=torch.bool),
        },
        [2],
    )
    return td


def test_next_root_of_plain_tensors_is_step_mdp():
    td = _stepped(hidden=torch.randn(2, 4), reward=torch.zeros(2, 1))  # a root "reward" is carried, as step_mdp does
    _same(next_root(td, ["reward"]), step_mdp(td, reward_keys=["reward"]))


def test_next_root_on_a_device_is_step_mdp():
    td = _stepped().to("cpu")
    out = next_root(td, ["reward"])
    assert out.device == torch.device("cpu")
    _same(out, step_mdp(td, reward_keys=["reward"]))


@pytest.mark.parametrize(
    "layout",
    ["nested reward", "group in next", "group at root", "other batch in next", "other device", "subclass"],
)
def test_next_root_fallbacks_give_step_mdp(layout):
    td = _stepped()
    reward_keys: list = ["reward"]
    if layout == "nested reward":
        td["next", "agents"] = TensorDict({"reward": torch.ones(2, 3, 1)}, [2, 3])
        reward_keys = ["reward", ("agents", "reward")]
    elif layout == "group in next":
        td["next", "agents"] = TensorDict({"observation": torch.ones(2, 3, 1)}, [2, 3])
    elif layout == "group at root":
        td["memory"] = TensorDict({"h": torch.ones(2, 5)}, [2])
    elif layout == "other batch in next":
        td = TensorDict({"observation": torch.zeros(2, 3), "action": torch.ones(2, 1)}, [2])
        td["next"] = TensorDict({"observation": torch.ones(2, 3, 1), "reward": torch.ones(2, 3, 1)}, [2, 3])
    elif layout == "other device":
        td = TensorDict({"observation": torch.zeros(2, 3), "action": torch.ones(2, 1)}, [2])
        td["next"] = TensorDict({"observation": torch.ones(2, 3), "reward": torch.ones(2, 1)}, [2], device="cpu")
    elif layout == "subclass":
        td = LazyStackedTensorDict.lazy_stack([td[0], td[1]], 0)
    _same(next_root(td, reward_keys), step_mdp(td, reward_keys=reward_keys))


def _rollouts(env, policy, monkeypatch, steps=12, **kwargs):
    torch.manual_seed(0)
    env.set_seed(0)
    fast = env.rollout(steps, policy, **kwargs)
    monkeypatch.setattr(env_rollout, "_numpy_view", lambda dst: None)  # every entry through select().copy_
    torch.manual_seed(0)
    env.set_seed(0)
    general = env.rollout(steps, policy, **kwargs)
    monkeypatch.undo()
    return fast, general


def _equal(a: TensorDictBase, b: TensorDictBase) -> None:
    assert a.batch_size == b.batch_size
    assert list(a.keys(True, True)) == list(b.keys(True, True))
    for key in a.keys(True, True):
        x, y = a.get(key), b.get(key)
        assert x.dtype == y.dtype, key
        assert x.requires_grad == y.requires_grad, key
        assert torch.equal(x, y), key


class _Policy(nn.Module):
    """Writes a float action, a float16 and an int entry (numpy writes them too) and a bfloat16 one (torch's path)."""

    def __init__(self, env, grad: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1])
        self.grad = grad

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        obs = td.get("observation").float()
        action = self.lin(obs) if self.grad else self.lin(obs).detach()
        td.set("action", action.clamp(-1, 1))
        td.set("half", obs.half())
        td.set("brain", obs.bfloat16())
        td.set("count", obs.long())
        return td


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_rollout_numpy_writes_equal_torch_copies(monkeypatch, grad, batch):
    env = ContinuousActionMock(batch_size=batch)
    policy = _Policy(env, grad)
    with torch.set_grad_enabled(grad):  # with grad, the action's entry takes torch's copy (autograd kept)
        fast, general = _rollouts(env, policy, monkeypatch, break_when_any_done=False)
    _equal(fast, general)
    assert fast.get("action").requires_grad == grad


def test_rollout_fast_paths_on_the_seed_chain_equal_the_general_path(monkeypatch):
    env = TransformedEnv(CountingEnv(max_steps=4), StepCounter())
    env.append_transform(DoubleToFloat())

    def policy(td):
        td.set("action", torch.ones(1, dtype=torch.int64))
        return td

    fast, general = _rollouts(env, policy, monkeypatch, steps=10)
    _equal(fast, general)
    assert fast["next", "step_count"].squeeze(-1).tolist() == [1, 2, 3, 4]  # stopped at the first done


def test_rollout_of_an_env_reusing_its_tensors_keeps_each_step(monkeypatch):
    class Reusing(CountingEnv):
        def _step(self, tensordict):
            out = super()._step(tensordict)
            buf = self.__dict__.setdefault("_buf", torch.zeros_like(out["observation"]))
            buf.copy_(out["observation"])  # the same tensor at every step, rewritten in place
            out.set("observation", buf)
            return out

    env = Reusing(max_steps=5)
    fast, general = _rollouts(env, lambda td: td.set("action", torch.ones(1, dtype=torch.int64)), monkeypatch)
    _equal(fast, general)
    assert fast["next", "observation"].squeeze(-1).tolist() == [1, 2, 3, 4, 5]


def test_rollout_of_nested_keys_equals_the_general_path(monkeypatch):
    env = NestedKeyMock()

    def policy(td):
        return td.update(env.full_action_spec.zero())

    fast, general = _rollouts(env, policy, monkeypatch)
    _equal(fast, general)


def test_numpy_views_only_where_numpy_writes_as_torch():
    assert env_rollout._numpy_view(torch.zeros(4, 2)) is not None
    assert env_rollout._numpy_view(torch.zeros(4, dtype=torch.bool)) is not None
    assert env_rollout._numpy_view(torch.zeros(4, dtype=torch.bfloat16)) is None  # numpy has no bfloat16
    assert env_rollout._numpy_view(torch.zeros(4, requires_grad=True)) is None  # autograd records copy_
    assert env_rollout._numpy_view(torch.zeros(4, dtype=torch.complex64)) is None


def _by_indexing(env, policy, monkeypatch, steps=12, **kwargs):
    """The rollout with every step assigned by TensorDict indexing (the step writer refused)."""
    monkeypatch.setattr(env_rollout._StepWriter, "write", lambda self, td, t: False)
    try:
        torch.manual_seed(0)
        env.set_seed(0)
        return env.rollout(steps, policy, **kwargs)
    finally:
        monkeypatch.undo()


def _run(env, policy, steps=12, **kwargs):
    torch.manual_seed(0)
    env.set_seed(0)
    return env.rollout(steps, policy, **kwargs)


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("break_when_any_done", [True, False])
def test_step_writer_equals_tensordict_indexing(monkeypatch, batch, break_when_any_done):
    env = TransformedEnv(ContinuousActionMock(batch_size=batch), StepCounter())
    policy = _Policy(env)
    with torch.no_grad():
        ours = _run(env, policy, break_when_any_done=break_when_any_done)
        ref = _by_indexing(env, policy, monkeypatch, break_when_any_done=break_when_any_done)
    _equal(ours, ref)


def test_step_writer_on_nested_groups_equals_tensordict_indexing(monkeypatch):
    env = NestedKeyMock()

    def policy(td):
        return td.update(env.full_action_spec.zero())

    _equal(_run(env, policy), _by_indexing(env, policy, monkeypatch))


def _changing_policy(change: str, at: int = 3):
    calls = {"n": 0}

    def policy(td):
        calls["n"] += 1
        td.set("action", torch.ones(1, dtype=torch.int64))
        if calls["n"] == 1 or (change == "extra" and calls["n"] < at):
            td.set("extra", torch.zeros(2))
        if change == "extra" and calls["n"] >= at:
            td.set("extra", torch.zeros(2))
            td.set("late", torch.ones(1))  # an entry the first step did not have
        if change == "reshaped" and calls["n"] >= at:
            td.set("extra", torch.zeros(3))
        if change == "subclass" and calls["n"] >= at:
            td.set("extra", nn.Parameter(torch.full((2,), float(calls["n"])), requires_grad=False))
        return td

    return policy


@pytest.mark.parametrize("change", ["extra", "reshaped", "subclass"])
def test_a_step_laid_out_differently_behaves_as_tensordict_indexing(monkeypatch, change):
    """A step that does not fit the first one goes to TensorDict indexing: same result or same error."""
    env = CountingEnv(max_steps=8)
    outcomes = []
    for run in (_run, lambda e, p, **kw: _by_indexing(e, p, monkeypatch, **kw)):
        try:
            outcomes.append(run(env, _changing_policy(change), steps=6))
        except Exception as err:  # the two paths must fail alike
            outcomes.append(type(err))
    if isinstance(outcomes[0], type) or isinstance(outcomes[1], type):
        assert outcomes[0] == outcomes[1]
    else:
        _equal(outcomes[0], outcomes[1])
    if change == "subclass":  # a tensor subclass of the same shape is written (torch's copy)
        assert outcomes[0]["extra"][:, 0].tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 6.0]


def test_next_root_of_a_batched_env_with_resets_is_step_mdp_then_reset():
    env = TransformedEnv(CountingEnv(max_steps=5, batch_size=[2]), StepCounter())
    td = env.reset()
    td.set("action", torch.ones(2, 1, dtype=torch.int64))
    stepped = env.step(td)
    stepped.set(("next", "done"), torch.tensor([[True], [False]]))
    ours = env._next_root(stepped.clone())
    ref = step_mdp(stepped.clone(), reward_keys=env.reward_keys)  # what _next_root did before
    ref.set("_reset", ref.get("done").clone())
    ref = env.reset(ref)
    assert list(ours.keys(True, True)) == list(ref.keys(True, True))
    for key in ours.keys(True, True):
        assert torch.equal(ours.get(key), ref.get(key)), key
    assert ours["step_count"].squeeze(-1).tolist() == [0, 1]
