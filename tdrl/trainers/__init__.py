"""Trainers: the ``Trainer`` loop and its hooks (TorchRL's ``torchrl.trainers``)."""

from tdrl.trainers.control_hooks import EarlyStopping, LRSchedulerHook, TargetNetUpdaterHook, ValueEstimatorHook
from tdrl.trainers.diagnostic_hooks import ClearCudaCache, LogTiming, UTDRHook
from tdrl.trainers.hooks import (
    BatchSubSampler,
    CountFramesLog,
    LogScalar,
    LogValidationReward,
    OptimizerHook,
    ReplayBufferTrainer,
    RewardNormalizer,
    SelectKeys,
    UpdateWeights,
    mask_batch,
)
from tdrl.trainers.steppers import DefaultOptimizationStepper, MixedPrecisionOptimizationStepper, OptimizationStepper
from tdrl.trainers.trainers import HOOK_POINTS, Trainer, TrainerHookBase

__all__ = [
    "Trainer",
    "TrainerHookBase",
    "HOOK_POINTS",
    "BatchSubSampler",
    "CountFramesLog",
    "LogScalar",
    "LogValidationReward",
    "OptimizerHook",
    "ReplayBufferTrainer",
    "RewardNormalizer",
    "SelectKeys",
    "UpdateWeights",
    "mask_batch",
    "LRSchedulerHook",
    "TargetNetUpdaterHook",
    "ValueEstimatorHook",
    "EarlyStopping",
    "LogTiming",
    "UTDRHook",
    "ClearCudaCache",
    "OptimizationStepper",
    "DefaultOptimizationStepper",
    "MixedPrecisionOptimizationStepper",
]
