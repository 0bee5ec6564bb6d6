"""Ray as an optional dependency, shared by RayCollector and RayReplayBuffer: the lazy import, who started the
runtime, and waits that end.

One ownership count for the whole process: a collector and a buffer that share a runtime tdrl started keep it
alive until the last of them is closed.

- :func:`import_ray` imports Ray on first use, with a one-line fix when it is missing.
- :func:`acquire_runtime` / :func:`release_runtime`: connect to the running Ray runtime, or
  start one; a runtime started here is shut down when the last object that needed it is
  closed, and one started by the user is never shut down.
- :func:`call` / :func:`wait`: an actor call and ``ray.get`` with a timeout, whose failures say what was waited for: a
  :class:`TimeoutError` when the actor does not answer, a :class:`RuntimeError` when it died.
"""

from __future__ import annotations

import threading
from typing import Any

RAY_MISSING = '{what} needs Ray, which is not installed: pip install "tdrl[ray]"'

_lock = threading.Lock()
_owners = 0  # live objects sharing a runtime that acquire_runtime started


def import_ray(what: str = "this object") -> Any:
    """The ``ray`` module; ``ImportError`` naming the ``ray`` extra when it is not installed."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(RAY_MISSING.format(what=what)) from err
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
    """Connects to the Ray runtime of this process, or starts one with ``ray.init(**config)``.

    Returns whether the caller shares a runtime started here (and so must call
    :func:`release_runtime`).
    """
    global _owners
    ray = import_ray("this object")
    with _lock:
        if ray.is_initialized():
            if _owners:
                _owners += 1
                return True
            return False
        ray.init(**config)
        _owners = 1
        return True


def release_runtime(owned: bool) -> None:
    """Shuts Ray down when the last owner of a runtime started by :func:`acquire_runtime` lets go."""
    global _owners
    if not owned:
        return
    ray = import_ray("this object")
    with _lock:
        _owners = max(_owners - 1, 0)
        if _owners == 0 and ray.is_initialized():
            ray.shutdown()


def call(actor: Any, method: str, args: tuple[Any, ...], timeout: float | None, what: str) -> Any:
    """``actor.method.remote(*args)`` and its result: see :func:`wait`.

    Refuses before Ray is touched when no runtime runs in this process: a call on an actor
    handle would start a new runtime (or join another cluster) where that actor does not exist.
    """
    ray = import_ray("this object")
    if not ray.is_initialized():
        raise RuntimeError(
            f"{what}: Ray is not running in this process (it was shut down, or this handle was "
            "unpickled outside the cluster); the actor cannot be reached"
        )
    return wait(getattr(actor, method).remote(*args), timeout, what)


def wait(ref: Any, timeout: float | None, what: str) -> Any:
    """``ray.get(ref, timeout=timeout)``; a dead actor or a timeout raise with ``what`` in the message.

    An error raised by the actor's own code comes out as Ray raises it: an exception that is
    an instance of the original type (``ValueError``, ``KeyError``...), with the actor's traceback.
    """
    ray = import_ray("this object")
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(
            f"{what}: no answer within timeout={timeout} s; the actor may be busy or its node overloaded. "
            "Pass a larger timeout= to the constructor, or check the cluster (ray status)"
        ) from None
    except ray.exceptions.RayActorError as err:
        cause = str(err).strip().splitlines()
        detail = cause[0] if cause else type(err).__name__
        raise RuntimeError(
            f"{what}: the actor is dead ({detail}); what it held is lost. Create a new one "
            "(and restore it with loads() from a dumps() checkpoint)"
        ) from err
