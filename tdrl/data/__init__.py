"""Data containers: specs (re-exported from :mod:`tdrl.specs`) and replay buffers."""

from tdrl.specs import *  # noqa: F401,F403
from tdrl.specs import __all__ as _spec_names

__all__ = list(_spec_names)
