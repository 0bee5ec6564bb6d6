"""max_frames_per_traj: None, 0 and -1 all mean no limit (TorchRL's convention); N truncates at N."""

import pytest

from tdrl.collectors import SyncDataCollector
from tdrl.testing import CountingEnv


@pytest.mark.parametrize("limit", [None, 0, -1])
def test_no_limit_spellings_leave_episodes_to_the_env(limit):
    collector = SyncDataCollector(
        CountingEnv(max_steps=6), None, frames_per_batch=12, total_frames=12, max_frames_per_traj=limit
    )
    batch = next(iter(collector))
    assert collector.max_frames_per_traj is None
    assert int(batch["next", "done"].sum()) == 2  # the env ends its episodes every 6 steps
    collector.shutdown()


def test_a_positive_limit_truncates_and_a_non_int_is_refused():
    collector = SyncDataCollector(
        CountingEnv(max_steps=6), None, frames_per_batch=12, total_frames=12, max_frames_per_traj=4
    )
    batch = next(iter(collector))
    assert int(batch["next", "truncated"].sum()) == 3
    collector.shutdown()
    with pytest.raises(ValueError, match="max_frames_per_traj must be None or an int"):
        SyncDataCollector(CountingEnv(), None, frames_per_batch=2, total_frames=2, max_frames_per_traj=2.5)
