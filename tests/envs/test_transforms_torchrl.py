"""Differential tests against TorchRL 0.14.1: the same gymnasium env, seed and actions give the same outputs."""

from __future__ import annotations

import warnings

import pytest
import torch

torchrl = pytest.importorskip("torchrl")


def _replay(actions: torch.Tensor):
    state = {"t": 0}

    def policy(td):
        td.set("action", actions[state["t"]])
        state["t"] += 1
        return td

    return policy


@pytest.mark.parametrize(
    ("name", "max_steps", "steps"), [("InvertedDoublePendulum-v4", 7, 80), ("Pendulum-v1", 30, 230)]
)
def test_step_counter_matches_torchrl(name, max_steps, steps):
    from torchrl.envs import StepCounter as TorchRLStepCounter
    from torchrl.envs import TransformedEnv as TorchRLTransformedEnv
    from torchrl.envs.libs.gym import GymEnv as TorchRLGymEnv

    from tdrl.envs import StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TorchRLTransformedEnv(TorchRLGymEnv(name), TorchRLStepCounter(max_steps=max_steps))
        ours = TransformedEnv(GymEnv(name), StepCounter(max_steps=max_steps))
    theirs.set_seed(0)  # TorchRL resets with the seed at once ...
    ours.set_seed(0)
    ours.reset()  # ... tdrl at the next reset: consume it so both rollouts start from the second reset
    low, high = ours.action_spec.space.low, ours.action_spec.space.high
    actions = low + (high - low) * torch.rand(steps, *low.shape, generator=torch.Generator().manual_seed(0))
    a = theirs.rollout(steps, _replay(actions), break_when_any_done=False)
    b = ours.rollout(steps, _replay(actions), break_when_any_done=False)
    for key in [
        "step_count",
        ("next", "step_count"),
        ("next", "truncated"),
        ("next", "done"),
        ("next", "terminated"),
        ("next", "reward"),
        "observation",
        ("next", "observation"),
    ]:
        assert torch.equal(a.get(key), b.get(key)), key
    assert b["next", "truncated"].any()
    assert (b["step_count"] == 0).sum() > 2
    theirs.close()
    ours.close()


# --- CatFrames followed by a transform that rewrites the stack (TorchRL's DQN tutorial chain) ---------------------
# The tutorial ("TorchRL trainer: A DQN example") builds
#   Compose(StepCounter(), ToTensorImage(), RewardScaling(0.0, 0.1), GrayScale(), Resize(64, 64),
#           CatFrames(4, in_keys=["pixels"], dim=-3), ObservationNorm(in_keys=["pixels"], ...))
# and fits the norm with init_stats(num_iter, cat_dim=0, reduce_dim=[-1, -2, -4], keep_dims=(-1, -2)).
# A pixel CartPole needs pygame (not installed here), so both libraries wrap the same deterministic pixel mock;
# TorchRL's Resize needs torchvision (not installed either): the mock's frames come at the size the stack takes.

_H, _W = 10, 12


def _frame(state: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [*B, H, W, 3] as a fixed function of the per-sub-env state [*B, 1]."""
    grid = torch.arange(_H * _W * 3, dtype=torch.int64).view(_H, _W, 3)
    return (
        (state.view(*state.shape[:-1], 1, 1, 1) * 37 + grid * (state.view(*state.shape[:-1], 1, 1, 1) % 5 + 1)) % 256
    ).to(torch.uint8)


def _pixel_mock(base_cls, specs, batch_size, lengths, action_moves=True):
    """An env class on ``base_cls`` (tdrl's or TorchRL's EnvBase) with the same dynamics.

    Sub-env ``b`` ends its episodes after ``lengths[b]`` steps (terminated), so a batched
    rollout resets sub-envs at different steps; with ``action_moves`` the action moves the
    state (so replayed actions matter), else the frames depend on the step alone (so random
    rollouts of both libraries see the same frames); the reward is the action.
    """
    from tensordict import TensorDict

    class PixelMock(base_cls):
        def __init__(self):
            super().__init__(batch_size=batch_size)
            b = self.batch_size
            self.observation_spec = specs.Composite(
                pixels=specs.Bounded(0, 255, shape=(*b, _H, _W, 3), dtype=torch.uint8), shape=b
            )
            self.action_spec = specs.Bounded(-1.0, 1.0, shape=(*b, 1))
            self.reward_spec = specs.Unbounded(shape=(*b, 1))
            flag = specs.Categorical(2, shape=(*b, 1), dtype=torch.bool)
            self.full_done_spec = specs.Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b)
            self.limit = torch.tensor(lengths, dtype=torch.int64).view(*b, 1)
            self.start = (torch.arange(len(lengths), dtype=torch.int64) * 5).view(*b, 1)
            self.state = self.start.clone()
            self.count = torch.zeros_like(self.state)

        def _reset(self, tensordict=None, **kwargs):
            mask = torch.ones_like(self.state, dtype=torch.bool)
            if tensordict is not None and "_reset" in tensordict.keys():
                mask = tensordict.get("_reset").view(self.state.shape)
            self.state = torch.where(mask, self.start, self.state)
            self.count = torch.where(mask, torch.zeros_like(self.count), self.count)
            done = torch.zeros_like(mask)
            flags = {"done": done, "terminated": done.clone(), "truncated": done.clone()}
            return TensorDict({"pixels": _frame(self.state), **flags}, self.batch_size)

        def _step(self, tensordict):
            action = tensordict.get("action")
            self.state = self.state + 1 + (action > 0).long() * action_moves
            self.count = self.count + 1
            done = self.count >= self.limit
            flags = {"done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}
            return TensorDict({"pixels": _frame(self.state), "reward": action.clone(), **flags}, self.batch_size)

        def _set_seed(self, seed):
            return seed

    return PixelMock()


def _tutorial_chain(lib, loc=None, scale=None, standard_normal=True):
    t = lib
    norm = (
        t.ObservationNorm(in_keys=["pixels"], standard_normal=standard_normal)
        if loc is None
        else t.ObservationNorm(in_keys=["pixels"], loc=loc, scale=scale, standard_normal=standard_normal)
    )
    return t.Compose(
        t.StepCounter(),
        t.ToTensorImage(),
        t.RewardScaling(loc=0.0, scale=0.1),
        t.GrayScale(),
        t.CatFrames(4, in_keys=["pixels"], dim=-3),
        norm,
    )


def _libs():
    import torchrl.data as torchrl_specs
    import torchrl.envs as torchrl_envs

    import tdrl.envs as tdrl_envs
    import tdrl.specs as tdrl_specs

    return (torchrl_envs, torchrl_specs), (tdrl_envs, tdrl_specs)


_COMPARED = [
    "pixels",
    ("next", "pixels"),
    "step_count",
    ("next", "step_count"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
]


@pytest.mark.parametrize("batch_size", [(), (3,)], ids=["single", "batched"])
def test_cat_frames_then_observation_norm_matches_torchrl(batch_size):
    (theirs_lib, theirs_specs), (ours_lib, ours_specs) = _libs()
    lengths = [4, 7, 5][: batch_size[0]] if batch_size else [6]
    loc = torch.tensor([0.2, -0.1, 0.3, 0.0]).view(4, 1, 1)
    scale = torch.tensor([0.5, 2.0, 1.5, 1.0]).view(4, 1, 1)
    envs = []
    for lib, specs in ((theirs_lib, theirs_specs), (ours_lib, ours_specs)):
        base = _pixel_mock(lib.EnvBase, specs, batch_size, lengths)
        envs.append(lib.TransformedEnv(base, _tutorial_chain(lib, loc.clone(), scale.clone())))
    steps = 23
    actions = torch.rand(steps, *batch_size, 1, generator=torch.Generator().manual_seed(1)) * 2 - 1
    theirs, ours = (env.rollout(steps, _replay(actions), break_when_any_done=False) for env in envs)
    assert ours["pixels"].shape == (*batch_size, steps, 4, _H, _W)
    for key in _COMPARED:
        a, b = theirs.get(key), ours.get(key)
        assert a.shape == b.shape, key
        torch.testing.assert_close(b, a.to(b.dtype), rtol=1e-5, atol=1e-5, msg=str(key))
    assert ours["next", "done"].sum() >= 3  # episodes restarted inside the rollout (in each sub-env)
    # the stacks are TorchRL's: normalized stacks of raw frames, restarted at each reset; step by step too
    for env in envs:
        env.set_seed(0)
    roots = [env.reset() for env in envs]
    for t in range(9):
        stepped = []
        for i, env in enumerate(envs):
            td = roots[i].set("action", actions[t].clone())
            td, roots[i] = env.step_and_maybe_reset(td)
            stepped.append(td)
        for key in _COMPARED:
            torch.testing.assert_close(stepped[1].get(key), stepped[0].get(key).to(stepped[1].get(key).dtype))
        torch.testing.assert_close(roots[1]["pixels"], roots[0]["pixels"])


def test_observation_norm_init_stats_on_cat_frames_matches_torchrl():
    # the tutorial's get_norm_stats: loc and scale of shape [C, 1, 1] with C = 4 stacked frames
    (theirs_lib, theirs_specs), (ours_lib, ours_specs) = _libs()
    stats = []
    for lib, specs in ((theirs_lib, theirs_specs), (ours_lib, ours_specs)):
        env = lib.TransformedEnv(_pixel_mock(lib.EnvBase, specs, (), [6], action_moves=False), _tutorial_chain(lib))
        env.transform[-1].init_stats(num_iter=48, cat_dim=0, reduce_dim=[-1, -2, -4], keep_dims=(-1, -2))
        stats.append(env.transform[-1].state_dict())
        rollout = env.rollout(13, break_when_any_done=False)
        stats[-1]["rollout"] = rollout["next", "pixels"]
    assert stats[1]["loc"].shape == (4, 1, 1)
    assert stats[1]["scale"].shape == (4, 1, 1)
    for key in ("loc", "scale", "rollout"):
        torch.testing.assert_close(stats[1][key], stats[0][key], rtol=1e-5, atol=1e-5, msg=key)


def test_cat_frames_then_observation_norm_on_cartpole_matches_torchrl():
    from torchrl.envs import CatFrames as TorchRLCatFrames
    from torchrl.envs import Compose as TorchRLCompose
    from torchrl.envs import ObservationNorm as TorchRLObservationNorm
    from torchrl.envs import TransformedEnv as TorchRLTransformedEnv
    from torchrl.envs.libs.gym import GymEnv as TorchRLGymEnv

    from tdrl.envs import CatFrames, Compose, ObservationNorm, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    loc, scale = torch.tensor(0.5), torch.tensor(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TorchRLTransformedEnv(
            TorchRLGymEnv("CartPole-v1"),
            TorchRLCompose(
                TorchRLCatFrames(N=4, dim=-1, in_keys=["observation"]),
                TorchRLObservationNorm(loc=loc, scale=scale, in_keys=["observation"]),
            ),
        )
        ours = TransformedEnv(
            GymEnv("CartPole-v1"),
            Compose(
                CatFrames(N=4, dim=-1, in_keys=["observation"]),
                ObservationNorm(loc=loc, scale=scale, in_keys=["observation"]),
            ),
        )
    theirs.set_seed(0)  # TorchRL resets with the seed at once ...
    ours.set_seed(0)
    ours.reset()  # ... tdrl at the next reset: consume it so both rollouts start from the second reset
    steps = 120
    actions = torch.nn.functional.one_hot(
        torch.randint(0, 2, (steps,), generator=torch.Generator().manual_seed(0)), 2
    ).to(ours.action_spec.dtype)
    a = theirs.rollout(steps, _replay(actions), break_when_any_done=False)
    b = ours.rollout(steps, _replay(actions), break_when_any_done=False)
    assert b["observation"].shape == (steps, 16)
    assert b["next", "done"].sum() >= 2  # stacks restarted at resets inside the rollout
    for key in ["observation", ("next", "observation"), ("next", "done"), ("next", "reward")]:
        torch.testing.assert_close(b.get(key), a.get(key).to(b.get(key).dtype), rtol=1e-5, atol=1e-5, msg=str(key))
    theirs.close()
    ours.close()
