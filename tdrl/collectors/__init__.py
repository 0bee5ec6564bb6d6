"""Collectors: run a policy in envs and hand out fixed-size batches of frames."""

from tdrl.collectors.sync import Collector, DataCollectorBase, SyncDataCollector
from tdrl.collectors.utils import RandomPolicy, split_trajectories

__all__ = [
    "SyncDataCollector",
    "Collector",
    "DataCollectorBase",
    "RandomPolicy",
    "split_trajectories",
]
