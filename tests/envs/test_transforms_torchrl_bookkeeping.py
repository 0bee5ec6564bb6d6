"""Differential tests against TorchRL 0.14.1: TrajCounter, FiniteTensorDictCheck, RemoveEmptySpecs,
LineariseRewards, FlattenAction, TerminateTransform, UnaryTransform, ExpandAs, ModuleTransform, Stack,
RandomTruncationTransform, ConditionalPolicySwitch and ConditionalSkip give TorchRL's data and specs on the same env
and actions.

(TorchRL's Crop calls torchvision, which the comparison venv lacks: Crop is tested on its own.)"""

from __future__ import annotations

import warnings

import pytest
import torch

torchrl = pytest.importorskip("torchrl")


def _libs():
    import torchrl.data as torchrl_specs
    import torchrl.envs as torchrl_envs

    import tdrl.envs as tdrl_envs
    import tdrl.specs as tdrl_specs

    return (torchrl_envs, torchrl_specs), (tdrl_envs, tdrl_specs)


def _mock(lib, specs, batch_size=(), lengths=(5,), empty_groups=False, nan_at=None):
    """A deterministic env on ``lib.EnvBase``, the same dynamics for both libraries.

    Sub-env ``b`` terminates after ``lengths[b]`` steps. Entries: ``observation`` [3],
    ``pixels`` float [3, 6, 6] in [0, 1]; the action is [2, 2] in [-1, 1]; the reward is a
    two-objective vector in [-4, 0] x [0, 1]. With ``empty_groups``, the observation and
    reward specs declare empty Composites that the data fills with empty TensorDicts.
    """
    from tensordict import TensorDict

    class Mock(lib.EnvBase):
        def __init__(self):
            super().__init__(batch_size=batch_size)
            b = self.batch_size
            self.observation_spec = specs.Composite(
                observation=specs.Unbounded(shape=(*b, 3)),
                pixels=specs.Bounded(0.0, 1.0, shape=(*b, 3, 6, 6)),
                shape=b,
            )
            if empty_groups:
                self.observation_spec["info"] = specs.Composite(inner=specs.Composite(shape=b), shape=b)
            self.action_spec = specs.Bounded(-1.0, 1.0, shape=(*b, 2, 2))
            low, high = torch.tensor([-4.0, 0.0]).expand(*b, 2), torch.tensor([0.0, 1.0]).expand(*b, 2)
            self.reward_spec = specs.Bounded(low.clone(), high.clone(), shape=(*b, 2))
            if empty_groups:
                self.full_reward_spec["other_reward"] = specs.Composite(shape=b)
            flag = specs.Categorical(2, shape=(*b, 1), dtype=torch.bool)
            self.full_done_spec = specs.Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b)
            self.limit = torch.tensor(lengths, dtype=torch.int64).view(*b, 1)
            self.count = torch.zeros(*b, 1, dtype=torch.int64)

        def _obs(self):
            c = self.count.float()
            obs = torch.cat([c, c.sin(), -c], -1)
            if nan_at is not None:
                obs = torch.where(self.count == nan_at, torch.full_like(obs, float("nan")), obs)
            grid = torch.arange(3 * 36, dtype=torch.float32).view(3, 6, 6)
            pixels = ((c.view(*c.shape[:-1], 1, 1, 1) * 7 + grid) % 13) / 13
            out = {"observation": obs, "pixels": pixels}
            if empty_groups:
                out["info"] = TensorDict({"inner": TensorDict({}, self.batch_size)}, self.batch_size)
            return out

        def _reset(self, tensordict=None, **kwargs):
            mask = torch.ones_like(self.count, dtype=torch.bool)
            if tensordict is not None and "_reset" in tensordict.keys():
                mask = tensordict.get("_reset").view(self.count.shape)
            self.count = torch.where(mask, torch.zeros_like(self.count), self.count)
            done = torch.zeros_like(mask)
            flags = {"done": done, "terminated": done.clone(), "truncated": done.clone()}
            return TensorDict({**self._obs(), **flags}, self.batch_size)

        def _step(self, tensordict):
            action = tensordict.get("action")
            self.count = self.count + 1
            done = self.count >= self.limit
            flags = {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}
            cost = -(action * action).sum((-2, -1)).unsqueeze(-1)
            reward = torch.cat([cost, (self.count.float() * 0.3) % 1], -1)
            out = {**self._obs(), "reward": reward, **flags}
            if empty_groups:
                out["other_reward"] = TensorDict({}, self.batch_size)
            return TensorDict(out, self.batch_size)

        def _set_seed(self, seed):
            return seed

    return Mock


def _both(make_transform, batch_size=(), lengths=(5,), **kwargs):
    """(TorchRL's env, tdrl's env): the mock wrapped with ``make_transform(lib)`` of each library."""
    envs = []
    for lib, specs in _libs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = _mock(lib, specs, batch_size, lengths, **kwargs)()
            envs.append(lib.TransformedEnv(base, make_transform(lib)))
    return envs


def _replay(actions, key="action"):
    state = {"t": 0}

    def policy(td):
        td.set(key, actions[state["t"]].clone())
        state["t"] += 1
        return td

    return policy


def _rollouts(theirs, ours, steps, key="action"):
    shape = ours.full_action_spec[key].shape
    actions = torch.rand(steps, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = theirs.rollout(steps, _replay(actions, key), break_when_any_done=False)
    b = ours.rollout(steps, _replay(actions, key), break_when_any_done=False)
    return a, b


def _same(a, b, keys):
    for key in keys:
        x, y = a.get(key), b.get(key)
        assert x.shape == y.shape, (key, x.shape, y.shape)
        assert x.dtype == y.dtype, (key, x.dtype, y.dtype)
        torch.testing.assert_close(y, x, equal_nan=True, msg=str(key))


def _same_spec(theirs, ours):
    assert tuple(theirs.shape) == tuple(ours.shape), (theirs, ours)
    assert theirs.dtype == ours.dtype, (theirs, ours)
    assert type(theirs).__name__.startswith(type(ours).__name__), (theirs, ours)  # TorchRL's BoundedContinuous...
    if type(ours).__name__ == "Bounded":
        torch.testing.assert_close(ours.space.low, theirs.space.low.to(ours.space.low.dtype))
        torch.testing.assert_close(ours.space.high, theirs.space.high.to(ours.space.high.dtype))


_BATCHES = pytest.mark.parametrize("batch_size", [(), (2,)], ids=["single", "batched"])


def _lengths(batch_size):
    return (3, 5)[: batch_size[0]] if batch_size else (4,)


@_BATCHES
def test_traj_counter_matches_torchrl(batch_size):
    theirs, ours = _both(lambda lib: lib.TrajCounter(), batch_size, _lengths(batch_size))
    _same_spec(theirs.observation_spec["traj_count"], ours.observation_spec["traj_count"])
    a, b = _rollouts(theirs, ours, 11)
    _same(a, b, ["traj_count", ("next", "traj_count"), ("next", "done")])


@_BATCHES
def test_finite_check_matches_torchrl(batch_size):
    theirs, ours = _both(lambda lib: lib.FiniteTensorDictCheck(), batch_size, _lengths(batch_size))
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["observation", ("next", "observation"), ("next", "reward")])
    theirs, ours = _both(lambda lib: lib.FiniteTensorDictCheck(), batch_size, (9, 9)[: len(batch_size) + 1], nan_at=2)
    for env in (theirs, ours):
        with pytest.raises(ValueError, match="finite"), warnings.catch_warnings():  # noqa: PT012
            warnings.simplefilter("ignore")
            env.rollout(4)


@_BATCHES
def test_remove_empty_specs_matches_torchrl(batch_size):
    theirs, ours = _both(lambda lib: lib.RemoveEmptySpecs(), batch_size, _lengths(batch_size), empty_groups=True)
    for slot in ("full_observation_spec", "full_reward_spec", "full_done_spec"):
        assert set(theirs.output_spec[slot].keys(True)) == set(ours.output_spec[slot].keys(True)), slot
    a, b = _rollouts(theirs, ours, 6)
    assert set(a.keys(True)) == set(b.keys(True))
    _same(a, b, ["observation", ("next", "observation"), ("next", "reward")])


@_BATCHES
@pytest.mark.parametrize("weights", [None, [1.0, -2.0]], ids=["sum", "weighted"])
def test_linearise_rewards_matches_torchrl(batch_size, weights):
    theirs, ours = _both(
        lambda lib: lib.LineariseRewards(in_keys=["reward"], weights=weights), batch_size, _lengths(batch_size)
    )
    _same_spec(theirs.reward_spec, ours.reward_spec)
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, [("next", "reward")])


@_BATCHES
def test_flatten_action_matches_torchrl(batch_size):
    theirs, ours = _both(lambda lib: lib.FlattenAction(-2, -1), batch_size, _lengths(batch_size))
    _same_spec(theirs.action_spec, ours.action_spec)
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["action", ("next", "reward")])
    stored = a.clone()
    stored["action"] = stored["action"].unflatten(-1, (2, 2))
    _same(theirs.transform(stored.clone()), ours.transform(stored.clone()), ["action"])


@_BATCHES
def test_terminate_matches_torchrl(batch_size):
    def stop(nxt):
        return nxt["observation"][..., 0] >= 2

    theirs, ours = _both(lambda lib: lib.TerminateTransform(stop), batch_size, (9, 9)[: len(batch_size) + 1])
    a, b = _rollouts(theirs, ours, 7)
    _same(a, b, [("next", "terminated"), ("next", "done"), ("next", "truncated"), "observation"])
    for write_done in (False, True):
        theirs, ours = _both(
            lambda lib, w=write_done: lib.TerminateTransform(stop, write_done=w),
            batch_size,
            (9, 9)[: len(batch_size) + 1],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = theirs.rollout(5), ours.rollout(5)
        # TorchRL's rollout also stops on a terminated flag whose done is unset; tdrl's stops on done (the
        # data of the steps both ran is the same)
        _same(a, b[..., : a.shape[-1]], [("next", "terminated"), ("next", "done")])
        assert a.shape[-1] == (2 if not write_done else b.shape[-1])


def _sq(x):
    return x * x


def _half(x):
    return x / 2


@_BATCHES
def test_unary_matches_torchrl(batch_size):
    def make(lib):
        return lib.UnaryTransform(
            in_keys=["observation"], out_keys=["obs_sq"], in_keys_inv=["action"], out_keys_inv=["action"],
            fn=_sq, inv_fn=_half,
        )  # fmt: skip

    theirs, ours = _both(make, batch_size, _lengths(batch_size))
    _same_spec(theirs.observation_spec["obs_sq"], ours.observation_spec["obs_sq"])
    _same_spec(theirs.action_spec, ours.action_spec)
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["obs_sq", ("next", "obs_sq"), ("next", "reward"), "action"])


@_BATCHES
def test_expand_as_matches_torchrl(batch_size):
    theirs, ours = _both(
        lambda lib: lib.ExpandAs("done", "pixels", out_key="done_px"), batch_size, _lengths(batch_size)
    )
    _same_spec(theirs.observation_spec["done_px"], ours.observation_spec["done_px"])
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["done_px", ("next", "done_px")])


@_BATCHES
def test_module_transform_matches_torchrl(batch_size):
    from tensordict.nn import TensorDictModule

    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 4)

    def make(lib):
        specs = torchrl.data if lib.__name__.startswith("torchrl") else __import__("tdrl.specs").specs

        def add(spec):
            spec["embedding"] = specs.Unbounded(shape=(*spec.shape, 4))
            return spec

        module = TensorDictModule(linear, in_keys=["observation"], out_keys=["embedding"])
        # TorchRL exports it from torchrl.envs.transforms only
        return lib.transforms.ModuleTransform(module=module, no_grad=True, observation_spec_transform=add)

    theirs, ours = _both(make, batch_size, _lengths(batch_size))
    _same_spec(theirs.observation_spec["embedding"], ours.observation_spec["embedding"])
    a, b = _rollouts(theirs, ours, 6)
    # TorchRL's runs the module on step outputs only (its rollout's root lacks the embedding); tdrl's also at reset
    _same(a, b, [("next", "embedding"), ("next", "observation")])
    assert "embedding" not in a.keys()
    with torch.no_grad():
        torch.testing.assert_close(b["embedding"], linear(b["observation"]))


@_BATCHES
def test_stack_matches_torchrl(batch_size):
    def make(lib):
        return lib.Compose(
            lib.UnaryTransform(in_keys=["observation"], out_keys=["obs_sq"], fn=_sq),
            lib.Stack(in_keys=["observation", "obs_sq"], out_key="both", dim=-2),
        )

    theirs, ours = _both(make, batch_size, _lengths(batch_size))
    _same_spec(theirs.observation_spec["both"], ours.observation_spec["both"])
    assert set(theirs.observation_spec.keys()) == set(ours.observation_spec.keys())
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["both", ("next", "both")])
    assert set(a.keys()) == set(b.keys())


@pytest.mark.parametrize("prob", [0.0, 0.5], ids=["spread-only", "redraws"])
def test_random_truncation_matches_torchrl(prob):
    # both draw horizons from torch's global RNG in the same order: the same seed gives the same episodes
    theirs, ours = _both(
        lambda lib: lib.Compose(lib.StepCounter(), lib.RandomTruncationTransform(2, 5, prob=prob)), (4,), (50,) * 4
    )
    shape = ours.full_action_spec["action"].shape
    actions = torch.rand(15, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = []
    for env in (theirs, ours):
        torch.manual_seed(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs.append(env.rollout(15, _replay(actions), break_when_any_done=False))
    _same(runs[0], runs[1], [("next", "step_count"), ("next", "truncated"), ("next", "done"), "step_count"])


def _still(td):
    return td.set("action", torch.zeros_like(td["action"]) if "action" in td.keys() else torch.zeros(*td.shape, 2, 2))


@_BATCHES
def test_policy_switch_matches_torchrl(batch_size):
    def odd(td):
        return (td["observation"][..., 0] % 2 == 1).all()

    theirs, ours = _both(
        lambda lib: lib.ConditionalPolicySwitch(_still, odd), batch_size, (9, 9)[: len(batch_size) + 1]
    )
    a, b = _rollouts(theirs, ours, 6)
    _same(a, b, ["observation", ("next", "observation"), ("next", "reward"), ("next", "done")])
    count, done = b["next", "observation"][..., 0], b["next", "done"][..., 0]
    assert bool((done | (count % 2 == 0)).all())  # the other policy played every odd step


@_BATCHES
def test_conditional_skip_matches_torchrl(batch_size):
    def held(td):
        # count 2, 5, 8: the base env is not stepped (sub-envs run in lockstep, so the batch agrees)
        return (td["observation"][..., 0] % 3) == 2

    theirs, ours = _both(
        lambda lib: lib.Compose(lib.ConditionalSkip(held), lib.StepCounter()), batch_size, (9, 9)[: len(batch_size) + 1]
    )
    a, b = _rollouts(theirs, ours, 5)
    _same(a, b, ["observation", ("next", "observation"), ("next", "reward"), ("next", "done"), ("next", "step_count")])
    assert bool((b["next", "reward"] == 0).any())  # some steps were skipped
