"""tdrl._ray: one ownership count per process, shared by RayCollector and RayReplayBuffer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("ray")

PROGRAM = r"""
import ray, torch
from functools import partial
from tdrl.collectors.distributed import RayCollector
from tdrl.data import LazyTensorStorage, RayReplayBuffer
from tdrl.testing import CountingEnv

collector = RayCollector(CountingEnv, frames_per_batch=8, total_frames=16, address="local",
                         ray_init_config={"num_cpus": 2, "include_dashboard": False})
buffer = RayReplayBuffer(storage=partial(LazyTensorStorage, 64), batch_size=4)
for batch in collector:
    buffer.extend(batch.reshape(-1))
collector.shutdown()  # the buffer still holds a share of the runtime the collector started
print("after collector", ray.is_initialized(), len(buffer), tuple(buffer.sample().shape))
buffer.close()  # the last owner: Ray stops
print("after buffer", ray.is_initialized())
"""


def test_a_buffer_keeps_the_runtime_a_collector_started_until_it_is_closed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("after")]
    assert lines == ["after collector True 16 (4,)", "after buffer False"], out.stdout
