"""Distributed collection on Ray: :class:`RayCollector` runs tdrl collectors as Ray actors.

Ray is optional (``pip install "tdrl[ray]"``): this package imports without it, and
building a :class:`RayCollector` without Ray raises an ``ImportError`` saying so.
"""

from tdrl.collectors.distributed.ray import DEFAULT_REMOTE_CONFIG, RayCollector

__all__ = ["RayCollector", "DEFAULT_REMOTE_CONFIG"]
