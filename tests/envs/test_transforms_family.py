"""What each transform computes: values, episode boundaries, running statistics, inverses, images."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from tdrl.envs import (
    ActionScaling,
    CatFrames,
    CatTensors,
    CenterCrop,
    ClipTransform,
    Compose,
    DoubleToFloat,
    ExcludeTransform,
    FrameSkipTransform,
    GrayScale,
    InitTracker,
    ObservationNorm,
    RenameTransform,
    Resize,
    RewardClipping,
    RewardScaling,
    RewardSum,
    SelectTransform,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
    UnsqueezeTransform,
    VecNorm,
    check_env_specs,
)
from tdrl.specs import Bounded, Unbounded
from tdrl.testing import ContinuousActionMock, CountingEnv
from tdrl.testing.transform_contract import TransformTestEnv


def _episode_starts(done: torch.Tensor) -> torch.Tensor:
    """[*B, T] starts from next-done [*B, T, 1], by a plain loop (the reference for the tests)."""
    done = done.squeeze(-1)
    starts = torch.zeros_like(done)
    starts[..., 0] = True
    for t in range(1, done.shape[-1]):
        starts[..., t] = done[..., t - 1]
    return starts


# --- StepCounter ---------------------------------------------------------------------------
def test_step_counter_truncates_exactly_at_max_steps():
    env = TransformedEnv(CountingEnv(max_steps=100), StepCounter(max_steps=4))
    ro = env.rollout(10, break_when_any_done=False)
    assert ro["step_count"].squeeze(-1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert ro["next", "step_count"].squeeze(-1).tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    expected = [t in (3, 7) for t in range(10)]
    assert ro["next", "truncated"].squeeze(-1).tolist() == expected
    assert ro["next", "done"].squeeze(-1).tolist() == expected
    assert not ro["next", "terminated"].any()
    assert env.rollout(10).batch_size == (4,)  # break_when_any_done stops at the truncation


@pytest.mark.parametrize("vectorized", [True, False])
def test_step_counter_batched_random_ends(vectorized):
    env = TransformedEnv(TransformTestEnv(batch_size=[4], p_end=0.25, max_steps=100), StepCounter(max_steps=3))
    env.vectorized_rollout = vectorized
    env.set_seed(1)
    ro = env.rollout(40, break_when_any_done=False)
    root, nxt, done = ro["step_count"], ro["next", "step_count"], ro["next", "done"]
    starts = _episode_starts(done).unsqueeze(-1)
    assert (nxt == root + 1).all()
    assert (root[starts] == 0).all()
    assert (root[~starts] > 0).all()
    assert nxt.max() == 3
    assert ro["next", "truncated"][nxt == 3].all()
    assert done[nxt == 3].all()
    terminated_early = ro["next", "terminated"] & (nxt < 3)
    assert terminated_early.any()  # episodes also ended by the env, and the counter restarted after them
    check_env_specs(env)


def test_step_counter_without_max_steps_on_a_trajectory():
    td = TensorDict({"next": {"done": torch.tensor([[0], [1], [0], [0], [1], [0]], dtype=torch.bool)}}, [6])
    StepCounter()(td)
    assert td["step_count"].squeeze(-1).tolist() == [0, 1, 0, 1, 2, 0]
    assert td["next", "step_count"].squeeze(-1).tolist() == [1, 2, 1, 2, 3, 1]
    with pytest.raises(ValueError, match="trajectory"):
        StepCounter()(TensorDict({"next": {"done": torch.zeros(1, dtype=torch.bool)}}, []))


# --- CatFrames -----------------------------------------------------------------------------
def test_cat_frames_never_mixes_episodes_counting_env():
    env = TransformedEnv(CountingEnv(max_steps=3), CatFrames(N=4, dim=-1, in_keys=["observation"], out_keys=["stack"]))
    ro = env.rollout(8, break_when_any_done=False)
    # observation = steps since reset; a frame of the previous episode would show up as a 2 or 3
    # before a 0 in the stack
    assert ro["stack"].tolist() == [
        [0, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 2],
        [0, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 2],
        [0, 0, 0, 0],
        [0, 0, 0, 1],
    ]
    assert ro["next", "stack"][2].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("padding", ["same", "constant"])
@pytest.mark.parametrize("vectorized", [True, False])
def test_cat_frames_matches_a_reference_loop(padding, vectorized):
    n = 3
    env = TransformedEnv(
        TransformTestEnv(batch_size=[3], p_end=0.3),
        CatFrames(N=n, dim=-1, in_keys=["observation"], out_keys=["stack"], padding=padding, padding_value=-9.0),
    )
    env.vectorized_rollout = vectorized
    env.set_seed(2)
    ro = env.rollout(25, break_when_any_done=False)
    obs, stack, starts = ro["observation"], ro["stack"], _episode_starts(ro["next", "done"])
    assert starts[:, 1:].any()
    for b in range(3):
        start = 0
        for t in range(25):
            if starts[b, t]:
                start = t
            frames = []
            for k in range(t - n + 1, t + 1):
                if k >= start:
                    frames.append(obs[b, k])
                else:
                    frames.append(obs[b, start] if padding == "same" else torch.full_like(obs[b, t], -9.0))
            assert torch.equal(stack[b, t], torch.cat(frames)), (b, t)
            nxt = torch.cat([*frames[1:], ro["next", "observation"][b, t]])
            assert torch.equal(ro["next", "stack"][b, t], nxt), (b, t)


def test_cat_frames_partial_reset():
    env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[2]), CatFrames(N=3, dim=-1, in_keys=["observation"]))
    td = env.reset()
    for _ in range(4):
        td = env.step_and_maybe_reset(env.rand_action(td))[1]
    td.set("_reset", torch.tensor([[True], [False]]))
    td = env.reset(td)
    assert td["observation"].tolist() == [[0, 0, 0], [2, 3, 4]]
    td = env.rand_step(td)
    assert td["next", "observation"].tolist() == [[0, 0, 1], [3, 4, 5]]


def test_cat_frames_pixels_spec():
    env = TransformedEnv(TransformTestEnv(pixels=(4, 5)), Compose(ToTensorImage(), CatFrames(N=4, dim=-3)))
    spec = env.observation_spec["pixels"]
    assert spec.shape == (12, 4, 5)
    assert isinstance(spec, Bounded)
    check_env_specs(env)


# --- rewards -------------------------------------------------------------------------------
@pytest.mark.parametrize("vectorized", [True, False])
def test_reward_sum_restarts_per_episode(vectorized):
    env = TransformedEnv(TransformTestEnv(batch_size=[2], p_end=0.3), RewardSum())
    env.vectorized_rollout = vectorized
    env.set_seed(0)
    ro = env.rollout(20, break_when_any_done=False)
    reward, starts = ro["next", "reward"], _episode_starts(ro["next", "done"])
    for b in range(2):
        total = torch.zeros(1)
        for t in range(20):
            if starts[b, t]:
                total = torch.zeros(1)
            assert torch.equal(ro["episode_reward"][b, t], total)
            total = total + reward[b, t]
            assert torch.equal(ro["next", "episode_reward"][b, t], total)


def test_reward_scaling_and_clipping():
    td = TensorDict({"next": {"reward": torch.tensor([[-3.0], [0.5], [4.0]])}}, [3])
    out = Compose(RewardScaling(loc=1.0, scale=2.0), RewardClipping(-2.0, 3.0))(td.clone())
    assert out["next", "reward"].squeeze(-1).tolist() == [-2.0, 2.0, 3.0]
    std = RewardScaling(loc=1.0, scale=2.0, standard_normal=True)(td.clone())
    assert std["next", "reward"].squeeze(-1).tolist() == [-2.0, -0.25, 1.5]
    env = TransformedEnv(CountingEnv(), RewardClipping(0.0, 0.5))
    assert isinstance(env.reward_spec, Bounded)
    assert env.reward_spec.high.max() == 0.5


# --- InitTracker ------------------------------------------------------------------------------
def test_init_tracker_marks_first_steps():
    env = TransformedEnv(TransformTestEnv(batch_size=[3], p_end=0.3), InitTracker())
    env.set_seed(0)
    ro = env.rollout(15, break_when_any_done=False)
    assert torch.equal(ro["is_init"].squeeze(-1), _episode_starts(ro["next", "done"]))
    assert not ro["next", "is_init"].any()


# --- normalization -------------------------------------------------------------------------------
def test_observation_norm_forms_and_inverse():
    x = torch.tensor([[1.0, 4.0]])
    t = ObservationNorm(
        loc=torch.tensor([1.0, 2.0]),
        scale=torch.tensor([2.0, 4.0]),
        standard_normal=True,
        in_keys=["obs"],
        in_keys_inv=["act"],
        out_keys_inv=["act_n"],
    )
    out = t(TensorDict({"obs": x.clone()}, [1]))
    assert out["obs"].tolist() == [[0.0, 0.5]]
    back = t.inv(TensorDict({"act_n": torch.tensor([[0.0, 0.5]])}, [1]))
    assert back["act"].tolist() == [[1.0, 4.0]]
    t2 = ObservationNorm(loc=1.0, scale=3.0, in_keys=["obs"])
    assert t2(TensorDict({"obs": x.clone()}, [1]))["obs"].tolist() == [[4.0, 13.0]]  # x * scale + loc


def test_observation_norm_casts_to_the_entry_dtype():
    env = TransformedEnv(TransformTestEnv(dtype=torch.float64), ObservationNorm(loc=0.5, scale=2.0))
    ro = env.rollout(3)
    assert ro["observation"].dtype == torch.float64
    check_env_specs(env)


def test_init_stats_batched_keep_dims_and_refit():
    env = TransformedEnv(
        TransformTestEnv(batch_size=[4], obs_dim=3), ObservationNorm(in_keys=["observation"], standard_normal=True)
    )
    env.transform.init_stats(num_iter=400, reduce_dim=(0, 1), cat_dim=1, keep_dims=(1,))
    assert env.transform.loc.shape == (1, 3)
    obs = env.rollout(300, break_when_any_done=False)["observation"].reshape(-1, 3)
    assert (obs.mean(0).abs() < 0.3).all()
    assert ((obs.std(0) - 1).abs() < 0.3).all()
    env.transform.init_stats(num_iter=100, reduce_dim=(0, 1), cat_dim=1)  # fitting again is allowed
    assert env.transform.loc.shape == (3,)
    with pytest.raises(ValueError, match="cat_dim"):
        env.transform.init_stats(num_iter=10, reduce_dim=0, cat_dim=1)


def test_init_stats_takes_cat_dim_from_the_front_and_reduce_dims_from_the_back():
    # TorchRL's DQN tutorial: init_stats(num_iter, cat_dim=0, reduce_dim=[-1, -2, -4], keep_dims=(-1, -2)) on
    # stacked pixels [T, C, H, W]; cat_dim 0 is dim -4 of the collected data, which tdrl refused
    env = TransformedEnv(
        TransformTestEnv(pixels=(4, 5)),
        Compose(ToTensorImage(), ObservationNorm(in_keys=["pixels"], standard_normal=True)),
    )
    env.transform[-1].init_stats(num_iter=30, cat_dim=0, reduce_dim=[-1, -2, -4], keep_dims=(-1, -2))
    assert env.transform[-1].loc.shape == (3, 1, 1)
    with pytest.raises(ValueError, match=r"cat_dim \(1\) must be one of reduce_dim \(\[-1, -2, -4\]\)"):
        env.transform[-1].init_stats(num_iter=30, cat_dim=1, reduce_dim=[-1, -2, -4])
    with pytest.raises(ValueError, match=r"must be dims of the collected data, which has 4 dims"):
        env.transform[-1].init_stats(num_iter=30, cat_dim=0, reduce_dim=[0, 4])


def test_vec_norm_converges_and_freezes():
    vn = VecNorm(in_keys=["observation"], decay=1.0)
    env = TransformedEnv(TransformTestEnv(batch_size=[4]), vn)
    env.set_seed(0)
    ro = env.rollout(200, break_when_any_done=False)
    late = ro["observation"][:, 100:].reshape(-1, 3)
    assert (late.mean(0).abs() < 0.15).all()
    assert ((late.std(0) - 1).abs() < 0.15).all()
    count = vn.stats["observation", "count"].item()
    resets = 4 + ro["next", "done"][:, :-1].sum().item()  # the first reset, then each sub-env's own resets
    assert count == 4 * 200 + resets
    vn.freeze()
    env.rollout(10, break_when_any_done=False)
    assert vn.stats["observation", "count"].item() == count
    evaluation = vn.frozen_copy()
    assert evaluation.frozen
    assert evaluation.stats is vn.stats
    snapshot = vn.frozen_copy(share_stats=False)
    assert snapshot.stats is not vn.stats
    vn.unfreeze()
    norm = vn.to_observation_norm()
    td = TensorDict({"observation": torch.randn(5, 3)}, [5])
    expected = vn.freeze()(td.clone())["observation"]
    torch.testing.assert_close(norm(td.clone())["observation"], expected)


def test_vec_norm_state_dict_round_trip():
    vn = VecNorm(in_keys=["observation"])
    env = TransformedEnv(TransformTestEnv(), vn)
    env.rollout(20, break_when_any_done=False)
    other = TransformedEnv(TransformTestEnv(), VecNorm(in_keys=["observation"]))
    other.load_state_dict(env.state_dict())
    assert torch.equal(other.transform.stats["observation", "sum"], vn.stats["observation", "sum"])


def _worker_rollout(env: TransformedEnv, steps: int) -> None:
    torch.set_num_threads(1)
    env.rollout(steps, break_when_any_done=False)


@pytest.mark.parametrize("shared", [True, False])
def test_vec_norm_statistics_shared_across_processes(shared):
    vn = VecNorm(in_keys=["observation"], decay=1.0, lock=mp.get_context("fork").Lock())
    env = TransformedEnv(TransformTestEnv(p_end=0.0, max_steps=100), vn)  # statistics (zeros) built from the specs
    if shared:
        vn.share_memory_()
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_worker_rollout, args=(env, 10)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    # each worker: one reset + 10 steps
    assert vn.stats["observation", "count"].item() == (22 if shared else 0)


# --- actions -------------------------------------------------------------------------------------
def test_action_scaling_affine_reaches_the_base_env():
    env = TransformedEnv(TransformTestEnv(action_dim=2), ActionScaling(loc=0.5, scale=-0.25))
    assert env.action_spec.space.low.tolist() == [-2.0, -2.0]
    assert env.action_spec.space.high.tolist() == [6.0, 6.0]
    td = env.reset()
    td.set("action", torch.tensor([2.0, -2.0]))
    td = env.step(td)
    base_action = torch.tensor([0.0, 1.0])  # 0.5 - 0.25 * a
    assert td["next", "reward"].item() == -(base_action**2).sum().item()
    assert td["action"].tolist() == [2.0, -2.0]  # the policy's action is kept as written


class _UnboundedActionEnv(TransformTestEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_spec = Unbounded(shape=(2,))


def test_action_scaling_box_on_gym():
    from tdrl.envs.libs.gym import GymEnv

    env = TransformedEnv(GymEnv("Pendulum-v1"), ActionScaling(low=-1.0, high=1.0))
    assert env.action_spec.space.high.tolist() == [1.0]
    base = env.transform.inv(TensorDict({"action": torch.tensor([1.0])}, []))
    assert base["action"].tolist() == [2.0]
    check_env_specs(env)
    with pytest.raises(ValueError, match=r"ActionScaling.*bounded box.*Fix"):
        TransformedEnv(_UnboundedActionEnv(), ActionScaling())
    with pytest.raises(ValueError, match=r"ActionScaling.*int64.*continuous actions"):
        TransformedEnv(CountingEnv(), ActionScaling())
    env.close()


def test_double_to_float_inverse_casts_actions_back():
    env = TransformedEnv(TransformTestEnv(dtype=torch.float64), DoubleToFloat())
    assert env.action_spec.dtype == torch.float32
    assert env.reward_spec.dtype == torch.float32
    td = env.rand_action(env.reset())
    assert td["action"].dtype == torch.float32
    assert env.transform.inv(td)["action"].dtype == torch.float64
    td = env.step(td)
    assert td["next", "observation"].dtype == torch.float32


def test_clip_transform_values_and_spec():
    env = TransformedEnv(TransformTestEnv(), ClipTransform(in_keys=["observation"], low=-0.1, high=0.2))
    ro = env.rollout(20, break_when_any_done=False)
    assert ro["next", "observation"].min() >= -0.1
    assert ro["next", "observation"].max() <= 0.2
    spec = env.observation_spec["observation"]
    assert isinstance(spec, Bounded)
    assert spec.low.max() == pytest.approx(-0.1)
    assert spec.high.min() == pytest.approx(0.2)
    clipped = TransformedEnv(TransformTestEnv(), ClipTransform(in_keys_inv=["action"], low=0.0))
    assert clipped.action_spec.space.low.tolist() == [0.0, 0.0]
    assert clipped.action_spec.space.high.tolist() == [1, 1]


def test_frame_skip_repeats_and_sums():
    env = TransformedEnv(CountingEnv(max_steps=100), FrameSkipTransform(3))
    ro = env.rollout(3)
    assert ro["next", "observation"].squeeze(-1).tolist() == [3.0, 6.0, 9.0]
    assert ro["next", "reward"].squeeze(-1).tolist() == [3.0, 3.0, 3.0]
    short = TransformedEnv(CountingEnv(max_steps=4), FrameSkipTransform(3))
    ro = short.rollout(5)
    assert ro["next", "observation"].squeeze(-1).tolist() == [3.0, 4.0]  # stops at the episode's end
    assert ro["next", "reward"].squeeze(-1).tolist() == [3.0, 1.0]


# --- keys ----------------------------------------------------------------------------------------
def test_rename_exclude_select_cat_unsqueeze():
    env = TransformedEnv(TransformTestEnv(pixels=(2, 2)), RenameTransform(["observation"], ["obs"]))
    assert set(env.observation_spec.keys()) == {"obs", "pixels"}
    ro = env.rollout(3)
    assert "obs" in ro.keys()
    assert "observation" not in ro["next"].keys()
    env = TransformedEnv(TransformTestEnv(pixels=(2, 2)), ExcludeTransform("pixels"))
    assert set(env.observation_spec.keys()) == {"observation"}
    assert "pixels" not in env.rollout(3)["next"].keys()
    env = TransformedEnv(TransformTestEnv(pixels=(2, 2)), SelectTransform("pixels"))
    assert set(env.observation_spec.keys()) == {"pixels"}
    assert set(env.rollout(3)["next"].keys()) == {"pixels", "reward", "done", "terminated", "truncated"}
    env = TransformedEnv(
        TransformTestEnv(obs_dim=3),
        Compose(UnsqueezeTransform(-1, in_keys=["observation"]), CatTensors(["observation"], out_key="v", dim=-2)),
    )
    assert env.observation_spec["v"].shape == (3, 1)
    check_env_specs(env)
    with pytest.raises(ValueError, match="done flag"):
        TransformedEnv(CountingEnv(), ExcludeTransform("done"))


def test_rename_action_inverse():
    env = TransformedEnv(TransformTestEnv(), RenameTransform([], [], in_keys_inv=["action"], out_keys_inv=["move"]))
    assert env.action_keys == ["move"]
    td = env.reset().set("move", torch.tensor([0.5, 0.5]))
    td = env.step(td)
    assert td["next", "reward"].item() == pytest.approx(-0.5)


# --- images --------------------------------------------------------------------------------------
def test_image_transforms_values():
    pixels = torch.randint(0, 256, (2, 6, 8, 3), dtype=torch.uint8)
    td = TensorDict({"pixels": pixels}, [2])
    img = ToTensorImage()(td.clone())["pixels"]
    assert img.shape == (2, 3, 6, 8)
    assert img.dtype == torch.float32
    torch.testing.assert_close(img, pixels.permute(0, 3, 1, 2).float() / 255)
    small = Resize(4, 3)(TensorDict({"pixels": img.clone()}, [2]))["pixels"]
    torch.testing.assert_close(small, F.interpolate(img, size=(3, 4), mode="bilinear", align_corners=False))
    gray = GrayScale()(TensorDict({"pixels": img.clone()}, [2]))["pixels"]
    torch.testing.assert_close(gray, (0.2989 * img[:, :1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:]))
    crop = CenterCrop(4, 2)(TensorDict({"pixels": img.clone()}, [2]))["pixels"]
    assert torch.equal(crop, img[..., 2:4, 2:6])


@pytest.mark.parametrize("shape", [(6, 8, 1), (2, 6, 8, 3)], ids=["one-channel", "rgb"])
def test_to_tensor_image_leaves_its_input_alone(shape):
    # float pixels with one channel: movedim gave a contiguous view, .to() returned it, and the in-place
    # division by 255 rescaled the frame the env (or the root) still holds
    pixels = torch.rand(shape) * 255
    before = pixels.clone()
    out = ToTensorImage(from_int=True)(TensorDict({"pixels": pixels}, []))["pixels"]
    assert torch.equal(pixels, before)
    torch.testing.assert_close(out, before.movedim(-1, -3) / 255)


def test_image_chain_specs_on_an_env():
    env = TransformedEnv(
        TransformTestEnv(pixels=(10, 12)), Compose(ToTensorImage(), Resize(8, 6), GrayScale(), CenterCrop(4))
    )
    spec = env.observation_spec["pixels"]
    assert spec.shape == (1, 4, 4)
    assert spec.dtype == torch.float32
    assert isinstance(spec, Bounded)
    assert spec.low.min() == 0
    assert spec.high.max() == 1
    check_env_specs(env)
    cubic = TransformedEnv(
        TransformTestEnv(pixels=(10, 12)), Compose(ToTensorImage(), Resize(8, interpolation="bicubic"))
    )
    assert isinstance(cubic.observation_spec["pixels"], Unbounded)  # bicubic may overshoot [0, 1]
    with pytest.raises(ValueError, match=r"CenterCrop: a 20x20 crop does not fit"):
        TransformedEnv(TransformTestEnv(pixels=(10, 12)), Compose(ToTensorImage(), CenterCrop(20)))


def _make_vec_norm_env(vn: VecNorm) -> TransformedEnv:
    return TransformedEnv(TransformTestEnv(p_end=0.0, max_steps=100), vn)


class _SlowUpdateVecNorm(VecNorm):
    """A VecNorm whose update reads the statistics, waits 5 ms, then writes them: a race loses updates at once."""

    def _accumulate(self, node, total, squares, n):
        before = {name: node.get(name).clone() for name in ("sum", "ssq", "count")}
        time.sleep(0.005)
        for name, add in (("sum", total), ("ssq", squares), ("count", n)):
            node.get(name).copy_(before[name] * self.decay + add)


def test_vec_norm_shared_across_parallel_env_workers_never_loses_an_update():
    import functools

    from tdrl.envs.batched import ParallelEnv

    vn = _SlowUpdateVecNorm(in_keys=["observation"], decay=1.0)
    _make_vec_norm_env(vn)
    vn.share_memory_()  # and a lock that reaches the workers
    env = ParallelEnv(2, functools.partial(_make_vec_norm_env, vn), mp_start_method="fork")
    try:
        env.rollout(10, break_when_any_done=False)  # both workers update at the same moments
    finally:
        env.close()
    assert vn.stats["observation", "count"].item() == 22


@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_vec_norm_shared_with_parallel_env_workers(start_method):
    import functools

    from tdrl.envs.batched import ParallelEnv

    vn = VecNorm(in_keys=["observation"], decay=1.0)
    _make_vec_norm_env(vn)  # attaching builds the statistics from the specs
    vn.share_memory_()
    env = ParallelEnv(2, functools.partial(_make_vec_norm_env, vn), mp_start_method=start_method)
    try:
        env.rollout(10, break_when_any_done=False)
    finally:
        env.close()
    assert vn.stats["observation", "count"].item() == 22  # both workers: one reset + 10 steps each


@pytest.mark.parametrize(("loc", "scale"), [(9.0, 0.01), (-3.3, 7.1), (1000.0, 0.3), (0.7, 0.001)])
def test_action_scaling_hands_the_base_env_actions_inside_its_box(loc, scale):
    # loc + scale * action, in float32, put the ends of the policy's box just outside the base box
    # (1.0000223 for bounds +-1 with loc=1000): found by the transform fuzz suite
    env = TransformedEnv(ContinuousActionMock(), ActionScaling(loc=loc, scale=scale))
    box = env.base_env.action_spec
    for end in (env.action_spec.low, env.action_spec.high, env.action_spec.rand((1000,))):
        base = env.transform.inv(TensorDict({"action": end.clone()}, end.shape[:-1]))["action"]
        assert box.is_in(base), box.mismatch(base)


def test_renaming_an_entry_to_its_own_name_keeps_it():
    # RenameTransform(["observation"], ["observation"]) set the entry and then deleted it: found by the fuzz suite
    env = TransformedEnv(CountingEnv(), RenameTransform(["observation"], ["observation"]))
    assert "observation" in env.observation_spec.keys()
    assert env.rollout(2)["next", "observation"].squeeze(-1).tolist() == [1.0, 2.0]
    td = TensorDict({"a": torch.ones(1)}, [])
    assert RenameTransform(["a"], ["a"])(td)["a"].item() == 1.0
