"""Transforms: TransformedEnv, Compose and the transform family.

One file per family: ``transforms.py`` (the Transform base and Compose), ``env.py``
(TransformedEnv), ``norm.py`` (ObservationNorm, VecNorm), ``observation.py`` (dtype casts,
clipping), ``reward.py``, ``action.py``, ``step.py`` (step counting, frame stacking,
frame skipping, init tracking), ``keys.py`` (rename, exclude, select, concatenate,
unsqueeze), ``primer.py`` (TensorDictPrimer: a policy's recurrent state), ``image.py``,
``r3m.py`` and ``vip.py`` (pretrained visual encoders, on the ResNets of ``_resnet.py``) and
``rb_transforms.py`` (transforms of sampled data).
"""

from tdrl.envs.transforms.action import ActionScaling
from tdrl.envs.transforms.action_discrete import ActionDiscretizer, DiscreteActionProjection
from tdrl.envs.transforms.action_mask import ActionMask
from tdrl.envs.transforms.auto_reset import AutoResetEnv, AutoResetTransform
from tdrl.envs.transforms.batch_size import BatchSizeTransform
from tdrl.envs.transforms.burn_in import BurnInTransform
from tdrl.envs.transforms.checks import FiniteTensorDictCheck
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.counters import Timer, TrajCounter
from tdrl.envs.transforms.device import DeviceCastTransform
from tdrl.envs.transforms.empty_specs import RemoveEmptySpecs
from tdrl.envs.transforms.env import TransformedEnv
from tdrl.envs.transforms.expand import ExpandAs
from tdrl.envs.transforms.gsde import gSDENoise
from tdrl.envs.transforms.hash import Hash
from tdrl.envs.transforms.image import CenterCrop, Crop, GrayScale, Resize, ToTensorImage
from tdrl.envs.transforms.keys import (
    CatTensors,
    ExcludeTransform,
    RenameTransform,
    SelectTransform,
    UnsqueezeTransform,
)
from tdrl.envs.transforms.lives import EndOfLifeTransform
from tdrl.envs.transforms.module import ModuleTransform
from tdrl.envs.transforms.next_obs import NextObservationDelta, NextStateReconstructor
from tdrl.envs.transforms.noop_reset import NoopResetEnv
from tdrl.envs.transforms.norm import ObservationNorm, VecNorm
from tdrl.envs.transforms.observation import ClipTransform, DoubleToFloat, DTypeCastTransform
from tdrl.envs.transforms.pin_memory import PinMemoryTransform
from tdrl.envs.transforms.policy_switch import ConditionalPolicySwitch
from tdrl.envs.transforms.pooling import TimeMaxPool
from tdrl.envs.transforms.primer import TensorDictPrimer
from tdrl.envs.transforms.r3m import R3MTransform
from tdrl.envs.transforms.rb_transforms import MultiStepTransform, RandomCropTensorDict
from tdrl.envs.transforms.returns import Reward2GoTransform, TargetReturn
from tdrl.envs.transforms.reward import LineariseRewards, RewardClipping, RewardScaling, RewardSum
from tdrl.envs.transforms.running_stats import RunningMeanStd
from tdrl.envs.transforms.shape import FlattenAction, FlattenObservation, PermuteTransform, SqueezeTransform
from tdrl.envs.transforms.sign import BinarizeReward, SignTransform
from tdrl.envs.transforms.skip import ConditionalSkip
from tdrl.envs.transforms.stack import Stack
from tdrl.envs.transforms.step import CatFrames, FrameSkipTransform, InitTracker, StepCounter
from tdrl.envs.transforms.terminate import TerminateTransform
from tdrl.envs.transforms.transforms import Transform
from tdrl.envs.transforms.truncation import RandomTruncationTransform
from tdrl.envs.transforms.unary import UnaryTransform
from tdrl.envs.transforms.vecnorm import VecNormV2
from tdrl.envs.transforms.vip import VIPTransform

__all__ = [
    "Transform",
    "Compose",
    "TransformedEnv",
    "ObservationNorm",
    "VecNorm",
    "VecNormV2",
    "Hash",
    "RunningMeanStd",
    "DoubleToFloat",
    "DTypeCastTransform",
    "ClipTransform",
    "StepCounter",
    "InitTracker",
    "CatFrames",
    "FrameSkipTransform",
    "RewardSum",
    "RewardScaling",
    "RewardClipping",
    "ActionScaling",
    "RenameTransform",
    "ExcludeTransform",
    "SelectTransform",
    "CatTensors",
    "UnsqueezeTransform",
    "ToTensorImage",
    "Resize",
    "GrayScale",
    "CenterCrop",
    "RandomCropTensorDict",
    "MultiStepTransform",
    "TensorDictPrimer",
    "ActionMask",
    "DiscreteActionProjection",
    "ActionDiscretizer",
    "Reward2GoTransform",
    "TargetReturn",
    "BurnInTransform",
    "gSDENoise",
    "NextObservationDelta",
    "NextStateReconstructor",
    "PermuteTransform",
    "SqueezeTransform",
    "FlattenObservation",
    "SignTransform",
    "BinarizeReward",
    "TimeMaxPool",
    "EndOfLifeTransform",
    "DeviceCastTransform",
    "NoopResetEnv",
    "BatchSizeTransform",
    "AutoResetTransform",
    "AutoResetEnv",
    "TrajCounter",
    "Timer",
    "FiniteTensorDictCheck",
    "RemoveEmptySpecs",
    "LineariseRewards",
    "FlattenAction",
    "Crop",
    "TerminateTransform",
    "UnaryTransform",
    "ExpandAs",
    "ModuleTransform",
    "Stack",
    "RandomTruncationTransform",
    "PinMemoryTransform",
    "ConditionalPolicySwitch",
    "ConditionalSkip",
    "R3MTransform",
    "VIPTransform",
]
