"""Multi-process collectors take one device for all workers or a sequence of one per worker."""

import pytest

from tdrl.collectors import MultiSyncDataCollector
from tdrl.testing import CountingEnv


def test_one_device_per_worker():
    collector = MultiSyncDataCollector(
        [CountingEnv, CountingEnv],
        None,
        frames_per_batch=8,
        total_frames=8,
        device=["cpu", "cpu"],
        storing_device=("cpu", "cpu"),
    )
    try:
        batch = next(iter(collector))
        assert batch.numel() == 8
        assert batch.device is None or batch.device.type == "cpu"
    finally:
        collector.shutdown()


def test_a_device_list_of_the_wrong_length_is_refused_before_any_worker_starts():
    with pytest.raises(ValueError, match="storing_device has 3 entries for 2 workers"):
        MultiSyncDataCollector(
            [CountingEnv, CountingEnv], None, frames_per_batch=8, total_frames=8, storing_device=["cpu"] * 3
        )
