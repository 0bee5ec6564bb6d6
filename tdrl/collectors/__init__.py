"""Collectors: run a policy in envs and hand out fixed-size batches of frames."""

from tdrl.collectors.background import AsyncCollector
from tdrl.collectors.evaluator import Evaluator
from tdrl.collectors.multi import (
    MultiAsyncCollector,
    MultiaSyncDataCollector,
    MultiCollector,
    MultiSyncCollector,
    MultiSyncDataCollector,
)
from tdrl.collectors.sync import BaseCollector, Collector, DataCollectorBase, SyncDataCollector
from tdrl.collectors.utils import RandomPolicy, split_trajectories
from tdrl.collectors.weight_update import (
    MultiProcessedWeightUpdater,
    RayWeightUpdater,
    RemoteModuleWeightUpdater,
    VanillaWeightUpdater,
    WeightUpdaterBase,
)

__all__ = [
    "SyncDataCollector",
    "Collector",
    "DataCollectorBase",
    "BaseCollector",
    "MultiCollector",
    "AsyncCollector",
    "MultiSyncDataCollector",
    "MultiaSyncDataCollector",
    "MultiSyncCollector",
    "MultiAsyncCollector",
    "RandomPolicy",
    "split_trajectories",
    "Evaluator",
    "WeightUpdaterBase",
    "VanillaWeightUpdater",
    "MultiProcessedWeightUpdater",
    "RayWeightUpdater",
    "RemoteModuleWeightUpdater",
]
