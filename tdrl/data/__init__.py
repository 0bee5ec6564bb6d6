"""Data containers: specs (re-exported from :mod:`tdrl.specs`), replay buffers and post-processors."""

from tdrl.data.postprocs import MultiStep
from tdrl.data.replay_buffers import *  # noqa: F403
from tdrl.data.replay_buffers import __all__ as _replay_buffer_names
from tdrl.specs import *  # noqa: F403
from tdrl.specs import __all__ as _spec_names

__all__ = list(_spec_names) + list(_replay_buffer_names) + ["MultiStep"]
