"""Differential tests against TorchRL 0.14.1: shape, sign, pooling, lives, device, no-op, auto-reset, batch size.

The same mock env (written once on each library's EnvBase), the same transform and the
same actions give the same data and specs.
"""

from __future__ import annotations

import warnings

import pytest
import torch

torchrl = pytest.importorskip("torchrl")

_H, _W = 4, 5


def _libs():
    import torchrl.data as torchrl_specs
    import torchrl.envs as torchrl_envs

    import tdrl.envs as tdrl_envs
    import tdrl.specs as tdrl_specs

    return (torchrl_envs, torchrl_specs), (tdrl_envs, tdrl_specs)


def _mock(lib, specs, batch_size=(), lengths=(5,), self_reset=False, stateless=False, negative_actions=False):
    """A deterministic env on ``lib.EnvBase``; both libraries get the same dynamics.

    The state counts steps (plus 1 when the action's first entry is positive); sub-env ``b``
    terminates after ``lengths[b]`` steps. Entries: ``observation`` [3] (negative, zero and
    positive values), ``vec`` [1, 3], ``pixels`` uint8 [H, W, 3]; the action is [1, 2] in
    [-1, 1] (or [-1, -0.5] with ``negative_actions``); the reward is in {-1, -0.5, 0, 0.5}.
    With ``self_reset`` the step that ends an episode restarts it and returns the new
    episode's first observation. Lives: ``env.unwrapped.ale.lives()`` = 4 - count // 2.
    """
    from tensordict import TensorDict

    class Ale:
        def __init__(self, env):
            self.env = env

        def lives(self):
            return (4 - torch.div(self.env.count, 2, rounding_mode="floor")).reshape(self.env.batch_size)

    class Mock(lib.EnvBase):
        def __init__(self):
            super().__init__(batch_size=batch_size)
            b = self.batch_size
            self.observation_spec = specs.Composite(
                observation=specs.Unbounded(shape=(*b, 3)),
                vec=specs.Unbounded(shape=(*b, 1, 3)),
                pixels=specs.Bounded(0, 255, shape=(*b, _H, _W, 3), dtype=torch.uint8),
                shape=b,
            )
            self.action_spec = specs.Bounded(-1.0, -0.5 if negative_actions else 1.0, shape=(*b, 1, 2))
            self.reward_spec = specs.Unbounded(shape=(*b, 1))
            flag = specs.Categorical(2, shape=(*b, 1), dtype=torch.bool)
            self.full_done_spec = specs.Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b)
            self.limit = torch.tensor(lengths, dtype=torch.int64).view(*b, 1)
            self.state = torch.zeros(*b, 1, dtype=torch.int64)
            self.count = torch.zeros(*b, 1, dtype=torch.int64)
            self.__dict__["ale"] = Ale(self)

        @property
        def unwrapped(self):
            return self

        def _obs(self, state):
            s = state.float()
            obs = torch.cat([s - 2, (s % 3) - 1, -s], -1)
            grid = torch.arange(_H * _W * 3).view(_H, _W, 3)
            pixels = ((state.view(*state.shape[:-1], 1, 1, 1) * 29 + grid) % 256).to(torch.uint8)
            return {"observation": obs, "vec": obs.unsqueeze(-2) * 0.5, "pixels": pixels}

        def _reset(self, tensordict=None, **kwargs):
            if stateless:
                batch = tensordict.batch_size if tensordict is not None else torch.Size([])
                zero = torch.zeros(*batch, 1, dtype=torch.int64)
                done = torch.zeros(*batch, 1, dtype=torch.bool)
                flags = {"done": done, "terminated": done.clone(), "truncated": done.clone()}
                return TensorDict({**self._obs(zero), **flags}, batch)
            mask = torch.ones_like(self.state, dtype=torch.bool)
            if tensordict is not None and "_reset" in tensordict.keys():
                mask = tensordict.get("_reset").view(self.state.shape)
            self.state = torch.where(mask, torch.zeros_like(self.state), self.state)
            self.count = torch.where(mask, torch.zeros_like(self.count), self.count)
            done = torch.zeros_like(mask)
            flags = {"done": done, "terminated": done.clone(), "truncated": done.clone()}
            return TensorDict({**self._obs(self.state), **flags}, self.batch_size)

        def _step(self, tensordict):
            action = tensordict.get("action")
            if stateless:
                state = tensordict.get("observation")[..., -1:].neg().round().long()
                state = state + 1 + (action[..., 0, :1] > 0).long()
                done = state >= 6
                flags = {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}
                out = {**self._obs(state), "reward": (state % 4).float() * 0.5 - 1, **flags}
                return TensorDict(out, tensordict.batch_size)
            self.state = self.state + 1 + (action[..., 0, :1] > 0).long()
            self.count = self.count + 1
            done = self.count >= self.limit
            flags = {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}
            out = {**self._obs(self.state), "reward": (self.state % 4).float() * 0.5 - 1, **flags}
            if self_reset and done.any():
                self.state = torch.where(done, torch.zeros_like(self.state), self.state)
                self.count = torch.where(done, torch.zeros_like(self.count), self.count)
                out.update(self._obs(self.state))
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


def _replay(actions):
    state = {"t": 0}

    def policy(td):
        td.set("action", actions[state["t"]].clone())
        state["t"] += 1
        return td

    return policy


def _actions(env, steps, seed=0):
    shape = env.action_spec.shape
    return torch.rand(steps, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _rollouts(theirs, ours, steps, seed=0):
    actions = _actions(ours, steps, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = theirs.rollout(steps, _replay(actions), break_when_any_done=False)
    b = ours.rollout(steps, _replay(actions), break_when_any_done=False)
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


_ALL = ["observation", ("next", "observation"), "vec", ("next", "vec"), "pixels", ("next", "pixels"),
        ("next", "reward"), ("next", "done")]  # fmt: skip


@pytest.mark.parametrize("batch_size", [(), (2,)], ids=["single", "batched"])
def test_permute_matches_torchrl(batch_size):
    lengths = (4, 6)[: batch_size[0]] if batch_size else (5,)
    theirs, ours = _both(
        lambda lib: lib.Compose(
            lib.PermuteTransform([-1, -3, -2], in_keys=["pixels"]),
            lib.PermuteTransform([-1, -2], in_keys_inv=["action"]),
        ),
        batch_size,
        lengths,
    )
    _same_spec(theirs.observation_spec["pixels"], ours.observation_spec["pixels"])
    _same_spec(theirs.action_spec, ours.action_spec)
    a, b = _rollouts(theirs, ours, 12)
    assert b["pixels"].shape[-3:] == (3, _H, _W)
    assert b["action"].shape[-2:] == (2, 1)
    _same(a, b, _ALL)


@pytest.mark.parametrize("batch_size", [(), (2,)], ids=["single", "batched"])
def test_squeeze_and_flatten_match_torchrl(batch_size):
    lengths = (4, 6)[: batch_size[0]] if batch_size else (5,)
    theirs, ours = _both(
        lambda lib: lib.Compose(
            lib.SqueezeTransform(-2, in_keys=["vec"], in_keys_inv=["action"]),
            lib.FlattenObservation(-3, -1, in_keys=["pixels"], out_keys=["flat"]),
        ),
        batch_size,
        lengths,
    )
    for key in ("vec", "flat", "pixels"):
        _same_spec(theirs.observation_spec[key], ours.observation_spec[key])
    _same_spec(theirs.action_spec, ours.action_spec)
    a, b = _rollouts(theirs, ours, 12)
    _same(a, b, [*_ALL, "flat", ("next", "flat")])


def test_sign_and_binarize_match_torchrl():
    theirs, ours = _both(
        lambda lib: lib.Compose(
            lib.SignTransform(in_keys=["observation", "vec"]),
            lib.BinarizeReward(),
        ),
        (2,),
        (4, 6),
    )
    for key in ("observation", "vec"):
        _same_spec(theirs.observation_spec[key], ours.observation_spec[key])
    _same_spec(theirs.reward_spec, ours.reward_spec)
    a, b = _rollouts(theirs, ours, 12)
    _same(a, b, _ALL)
    assert set(b["next", "reward"].unique().tolist()) == {0, 1}


def test_sign_of_a_reward_matches_torchrl():
    theirs, ours = _both(lambda lib: lib.SignTransform(in_keys=["reward"]), (), (5,))
    _same_spec(theirs.reward_spec, ours.reward_spec)
    a, b = _rollouts(theirs, ours, 9)
    _same(a, b, [("next", "reward")])


@pytest.mark.parametrize(("batch_size", "T"), [((), 3), ((3,), 2), ((3,), 4)])
def test_time_max_pool_matches_torchrl(batch_size, T):
    lengths = (3, 5, 7)[: batch_size[0]] if batch_size else (4,)
    theirs, ours = _both(lambda lib: lib.TimeMaxPool(in_keys=["observation", "pixels"], T=T), batch_size, lengths)
    a, b = _rollouts(theirs, ours, 15)
    assert b["next", "done"].sum() >= 3
    _same(a, b, _ALL)


@pytest.mark.parametrize("batch_size", [(), (2,)], ids=["single", "batched"])
def test_end_of_life_matches_torchrl(batch_size):
    lengths = (5, 7)[: batch_size[0]] if batch_size else (7,)
    theirs, ours = _both(lambda lib: lib.EndOfLifeTransform(), batch_size, lengths)
    _same_spec(theirs.observation_spec["end-of-life"], ours.observation_spec["end-of-life"])
    _same_spec(theirs.observation_spec["lives"], ours.observation_spec["lives"])
    a, b = _rollouts(theirs, ours, 14)
    _same(a, b, [*_ALL, "lives", ("next", "lives"), "end-of-life", ("next", "end-of-life")])
    assert b["next", "end-of-life"].sum() > b["next", "done"].sum()


def test_device_cast_matches_torchrl():
    theirs, ours = _both(
        lambda lib: lib.DeviceCastTransform("cpu", in_keys=["observation"], out_keys=["moved"]), (2,), (4, 6)
    )
    assert set(theirs.observation_spec.keys()) == set(ours.observation_spec.keys())
    a, b = _rollouts(theirs, ours, 8)
    _same(a, b, [*_ALL, "moved", ("next", "moved")])
    theirs, ours = _both(lambda lib: lib.DeviceCastTransform("cpu"), (2,), (4, 6))
    assert theirs.device == ours.device
    a, b = _rollouts(theirs, ours, 8)
    _same(a, b, _ALL)


@pytest.mark.parametrize("batch_size", [(), (1,)], ids=["single", "one-sub-env"])
def test_noop_reset_matches_torchrl(batch_size):
    # the no-op steps draw random actions from each library's own generator: the mock's actions are all in
    # [-1, -0.5] (the state moves by 1 whatever the draw), so both reach the same state
    theirs, ours = _both(
        lambda lib: lib.Compose(lib.StepCounter(), lib.NoopResetEnv(noops=3, random=False)),
        batch_size,
        (5,),
        negative_actions=True,
    )
    a, b = _rollouts(theirs, ours, 10)
    _same(a, b, [*_ALL, "step_count", ("next", "step_count")])
    assert b["step_count"].flatten().tolist() == [3, 4, 3, 4, 3, 4, 3, 4, 3, 4]


@pytest.mark.parametrize("replace", [True, False])
def test_auto_reset_matches_torchrl(replace):
    envs = []
    for lib, specs in _libs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls = _mock(lib, specs, (2,), (3, 4), self_reset=True)
            envs.append(cls(auto_reset=True, auto_reset_replace=replace))
    theirs, ours = envs
    assert type(ours).__name__ == type(theirs).__name__ == "AutoResetEnv"
    a, b = _rollouts(theirs, ours, 11)
    _same(a, b, _ALL)
    assert b["next", "observation"].isnan().any() == replace


def test_batch_size_reshape_matches_torchrl():
    # (TorchRL 0.14.1 fails with a StepCounter after the reshape; tdrl's test_transforms_shape.py covers that chain)
    theirs, ours = _both(lambda lib: lib.BatchSizeTransform(reshape_fn=lambda d: d.reshape(2, 2)), (4,), (3, 4, 5, 6))
    assert theirs.batch_size == ours.batch_size == (2, 2)
    _same_spec(theirs.action_spec, ours.action_spec)
    a, b = _rollouts(theirs, ours, 10)
    assert b.batch_size == (2, 2, 10)
    assert b["next", "done"].sum() >= 4
    _same(a, b, _ALL)


def test_batch_size_of_a_stateless_env_matches_torchrl():
    theirs, ours = _both(lambda lib: lib.BatchSizeTransform(batch_size=[3]), (), (5,), stateless=True)
    assert theirs.batch_size == ours.batch_size == (3,)
    _same_spec(theirs.observation_spec["observation"], ours.observation_spec["observation"])
    a, b = _rollouts(theirs, ours, 9)
    _same(a, b, _ALL)


@pytest.mark.parametrize(
    "make",
    [
        lambda lib: lib.PermuteTransform([-2, -1, -3], in_keys=["pixels"]),
        lambda lib: lib.SqueezeTransform(-2, in_keys=["vec"]),
        lambda lib: lib.FlattenObservation(-2, -1, in_keys=["vec"]),
        lambda lib: lib.SignTransform(in_keys=["observation"]),
        lambda lib: lib.BinarizeReward(in_keys=["reward"]),
        lambda lib: lib.DeviceCastTransform("cpu", in_keys=["observation"], out_keys=["moved"]),
    ],
    ids=["permute", "squeeze", "flatten", "sign", "binarize", "device"],
)
def test_forward_on_a_tensordict_matches_torchrl(make):
    from tensordict import TensorDict

    gen = torch.Generator().manual_seed(0)
    data = {
        "pixels": torch.randint(0, 256, (6, _H, _W, 3), generator=gen, dtype=torch.uint8),
        "vec": torch.randn(6, 1, 3, generator=gen),
        "observation": torch.randn(6, 3, generator=gen).round(),
        "reward": torch.randn(6, 1, generator=gen),
    }
    (theirs_lib, _), (ours_lib, _) = _libs()
    a = make(theirs_lib)(TensorDict(data, [6]).clone())
    b = make(ours_lib)(TensorDict(data, [6]).clone())
    _same(a, b, list(a.keys(True, True)))
