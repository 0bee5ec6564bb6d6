"""The Ray runtime a distributed collector runs on: import Ray, connect or start, and stop only what we started.

Ray is an optional dependency (the ``ray`` extra): importing this module does not import
it; :func:`import_ray` does, and a missing Ray is one line saying how to install it.

Who shuts Ray down: a runtime that was already initialized when a collector was built
(``ray.init`` by the user, a test fixture, a Ray job) is left running; one that a tdrl
collector started is shut down when the last collector using it releases it.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

__all__ = ["import_ray", "init_config", "acquire_runtime", "release_runtime", "MISSING_RAY"]

MISSING_RAY = 'tdrl.collectors.distributed needs Ray, which is not installed: pip install "tdrl[ray]"'

_lock = threading.Lock()
_users = 0  # live collectors sharing a Ray runtime that tdrl started (0: tdrl owns none)


def import_ray() -> ModuleType:
    """The ``ray`` module, or an ``ImportError`` whose one line says ``pip install "tdrl[ray]"``."""
    try:
        import ray
    except ImportError:
        raise ImportError(MISSING_RAY) from None
    return ray


def init_config(ray_init_config: dict[str, Any] | None, address: str | None) -> dict[str, Any]:
    """The keyword arguments for ``ray.init``: ``ray_init_config`` with ``address`` merged in.

    Raises:
        TypeError: ``ray_init_config`` is not a dict.
        ValueError: ``address`` and ``ray_init_config["address"]`` disagree.
    """
    if ray_init_config is not None and not isinstance(ray_init_config, dict):
        raise TypeError(f"ray_init_config must be a dict of ray.init arguments, got {type(ray_init_config).__name__}.")
    config = dict(ray_init_config or {})
    if address is not None:
        given = config.get("address")
        if given is not None and given != address:
            raise ValueError(
                f"address={address!r} but ray_init_config['address']={given!r}: pass the cluster address once."
            )
        config["address"] = address
    return config


def acquire_runtime(config: dict[str, Any]) -> bool:
    """Make sure Ray is initialized; returns whether tdrl owns (started) the runtime.

    An initialized runtime is used as it is (``config`` is then ignored): a driver can
    only be connected to one cluster. Otherwise ``ray.init(**config)`` connects to the
    cluster at ``config["address"]`` (``"auto"``: the one running on this machine) or,
    with no address, to the one Ray finds (``RAY_ADDRESS``, or the latest cluster
    started on this machine), else starts a local one; ``"local"`` always starts one.
    """
    global _users
    ray = import_ray()
    with _lock:
        if ray.is_initialized():
            if _users > 0:  # started by another tdrl collector: share it
                _users += 1
                return True
            return False
        ray.init(**config)
        _users = 1
        return True


def release_runtime() -> None:
    """A collector that owned a share of the runtime is done; the last one shuts Ray down."""
    global _users
    ray = import_ray()
    with _lock:
        _users = max(_users - 1, 0)
        if _users == 0 and ray.is_initialized():
            ray.shutdown()
