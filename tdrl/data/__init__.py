"""Data containers: specs (re-exported from :mod:`tdrl.specs`), replay buffers and post-processors."""

from tdrl.data.hash import RandomProjectionHash, SipHash
from tdrl.data.postprocs import MultiStep
from tdrl.data.prefill import prefill_replay_buffer
from tdrl.data.replay_buffers import *  # noqa: F403
from tdrl.data.replay_buffers import __all__ as _replay_buffer_names
from tdrl.data.spec_utils import (
    BoundedContinuous,
    UnboundedContinuous,
    UnboundedDiscrete,
    check_no_exclusive_keys,
    consolidate_spec,
    contains_lazy_spec,
)
from tdrl.data.trajectories import find_start_stop_traj
from tdrl.specs import *  # noqa: F403
from tdrl.specs import __all__ as _spec_names

__all__ = [
    *_spec_names,
    *_replay_buffer_names,
    "MultiStep",
    "BoundedContinuous",
    "UnboundedContinuous",
    "UnboundedDiscrete",
    "consolidate_spec",
    "contains_lazy_spec",
    "check_no_exclusive_keys",
    "prefill_replay_buffer",
    "SipHash",
    "RandomProjectionHash",
    "find_start_stop_traj",
]
