"""Every transform of tdrl.envs.transforms through the transform contract (TransformContractTests)."""

from __future__ import annotations

import torch

from tdrl.envs import (
    ActionScaling,
    CatFrames,
    CatTensors,
    CenterCrop,
    ClipTransform,
    Compose,
    DoubleToFloat,
    DTypeCastTransform,
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
    UnsqueezeTransform,
    VecNorm,
)
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TestObservationNorm(TransformContractTests):
    def make_transform(self):
        return ObservationNorm(loc=torch.tensor([0.5, -0.5, 0.0]), scale=2.0, in_keys=["observation"])


class TestObservationNormStandard(TransformContractTests):
    def make_transform(self):
        return ObservationNorm(loc=1.0, scale=3.0, in_keys=["observation"], out_keys=["obs_norm"], standard_normal=True)


class TestDoubleToFloat(TransformContractTests):
    has_inverse = True
    forward_matches_env = False  # the env also casts actions back (inverse)

    def make_transform(self):
        return DoubleToFloat()

    def make_env(self):
        return TransformTestEnv(dtype=torch.float64)

    def make_batched_env(self):
        return TransformTestEnv(dtype=torch.float64, batch_size=[3])


class TestDoubleToFloatObservationOnly(TransformContractTests):
    def make_transform(self):
        return DoubleToFloat(in_keys=["observation"])

    def make_env(self):
        return TransformTestEnv(dtype=torch.float64)

    def make_batched_env(self):
        return TransformTestEnv(dtype=torch.float64, batch_size=[3])

    def test_action_stays_double(self):
        from tdrl.envs import TransformedEnv

        env = TransformedEnv(self.make_env(), self.make_transform())
        assert env.action_spec.dtype == torch.float64
        assert env.observation_spec["observation"].dtype == torch.float32


class TestDTypeCast(TransformContractTests):
    def make_transform(self):
        return DTypeCastTransform(torch.float32, torch.float64, in_keys=["observation", "reward"])


class TestStepCounter(TransformContractTests):
    def make_transform(self):
        return StepCounter()


class TestStepCounterMaxSteps(TransformContractTests):
    forward_matches_env = False  # truncation acts while stepping

    def make_transform(self):
        return StepCounter(max_steps=3)


class TestRewardSum(TransformContractTests):
    def make_transform(self):
        return RewardSum()


class TestRewardScaling(TransformContractTests):
    def make_transform(self):
        return RewardScaling(loc=1.0, scale=0.5)


class TestRewardClipping(TransformContractTests):
    def make_transform(self):
        return RewardClipping(-0.5, 0.0)


class TestVecNorm(TransformContractTests):
    forward_matches_env = False  # statistics move at every call

    def make_transform(self):
        return VecNorm(in_keys=["observation"], decay=0.99)


class TestCatTensors(TransformContractTests):
    def make_transform(self):
        return CatTensors(in_keys=["observation", "extra"], out_key="vector")

    def make_env(self):
        from tdrl.envs import TransformedEnv

        return TransformedEnv(TransformTestEnv(), RenameTransform(["observation"], ["extra"], create_copy=True))

    def make_batched_env(self):
        from tdrl.envs import TransformedEnv

        return TransformedEnv(
            TransformTestEnv(batch_size=[3]), RenameTransform(["observation"], ["extra"], create_copy=True)
        )


class TestRename(TransformContractTests):
    def make_transform(self):
        return RenameTransform(in_keys=["observation"], out_keys=[("nested", "obs")])


class TestRenameAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return RenameTransform(in_keys=[], out_keys=[], in_keys_inv=["action"], out_keys_inv=["my_action"])


class TestExclude(TransformContractTests):
    def make_transform(self):
        return ExcludeTransform("pixels")

    def make_env(self):
        return TransformTestEnv(pixels=(4, 4))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(4, 4), batch_size=[3])


class TestSelect(TransformContractTests):
    def make_transform(self):
        return SelectTransform("observation")

    def make_env(self):
        return TransformTestEnv(pixels=(4, 4))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(4, 4), batch_size=[3])


class TestUnsqueeze(TransformContractTests):
    def make_transform(self):
        return UnsqueezeTransform(-1, in_keys=["observation"])


class TestUnsqueezeAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return UnsqueezeTransform(-2, in_keys_inv=["action"])


class TestClip(TransformContractTests):
    def make_transform(self):
        return ClipTransform(in_keys=["observation"], low=-0.5, high=0.5)


class TestClipAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return ClipTransform(in_keys_inv=["action"], low=-0.25, high=0.5)


class TestActionScaling(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return ActionScaling(low=0.0, high=10.0)


class TestActionScalingAffine(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return ActionScaling(loc=0.5, scale=-0.25)


class TestInitTracker(TransformContractTests):
    def make_transform(self):
        return InitTracker()


class TestCatFrames(TransformContractTests):
    def make_transform(self):
        return CatFrames(N=3, dim=-1, in_keys=["observation"])


class TestCatFramesConstantPixels(TransformContractTests):
    def make_transform(self):
        return CatFrames(N=2, dim=-3, in_keys=["pixels"], out_keys=["stack"], padding="constant", padding_value=0)

    def make_env(self):
        return TransformTestEnv(pixels=(4, 4))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(4, 4), batch_size=[3])


class TestFrameSkip(TransformContractTests):
    forward_matches_env = False  # it changes how the env steps, not the data

    def make_transform(self):
        return FrameSkipTransform(2)


class TestImageChain(TransformContractTests):
    def make_transform(self):
        return Compose(ToTensorImage(), Resize(6, 5), GrayScale(), CenterCrop(4, 3), CatFrames(N=2, dim=-3))

    def make_env(self):
        return TransformTestEnv(pixels=(8, 7))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(8, 7), batch_size=[3])


class TestDQNTutorialChain(TransformContractTests):
    """TorchRL's DQN tutorial chain: the stacks are normalized after CatFrames (which keeps the raw stacks inside)."""

    def make_transform(self):
        return Compose(
            StepCounter(),
            ToTensorImage(),
            RewardScaling(loc=0.0, scale=0.1),
            GrayScale(),
            Resize(6, 5),
            CatFrames(4, in_keys=["pixels"], dim=-3),
            ObservationNorm(in_keys=["pixels"], loc=-0.5, scale=2.0),
        )

    def make_env(self):
        return TransformTestEnv(pixels=(8, 7))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(8, 7), batch_size=[3])


class TestCatFramesThenUnsqueeze(TransformContractTests):
    def make_transform(self):
        return Compose(CatFrames(N=3, dim=-1, in_keys=["observation"]), UnsqueezeTransform(-2, in_keys=["observation"]))


class TestSeedChain(TransformContractTests):
    """The seed tutorial's chain, with fixed normalization constants."""

    def make_transform(self):
        return Compose(ObservationNorm(loc=0.1, scale=0.5, in_keys=["observation"]), DoubleToFloat(), StepCounter())

    def make_env(self):
        return TransformTestEnv(dtype=torch.float64, action_dim=1)

    def make_batched_env(self):
        return TransformTestEnv(dtype=torch.float64, action_dim=1, batch_size=[3])

    forward_matches_env = False  # DoubleToFloat also casts the float64 action back
    has_inverse = True
