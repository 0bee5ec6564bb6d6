"""One collector in a background process: it collects the next batch while the caller trains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tdrl.collectors.multi import MultiaSyncDataCollector
from tdrl.envs.common import EnvBase

__all__ = ["AsyncCollector"]


class AsyncCollector(MultiaSyncDataCollector):
    """Run a single collector in a worker process, one batch ahead of the caller.

    The worker collects ``frames_per_batch`` frames with the weights it last loaded; as
    soon as a batch is handed out it starts the next one, so collection overlaps the
    training step (useful off-policy, where a batch one weight push old is fine). It is
    :class:`~tdrl.collectors.MultiaSyncDataCollector` with one worker, and takes its
    keyword arguments (``update_policy_weights_()`` pushes the policy's weights, which the
    worker loads before its next batch).

    Args:
        create_env_fn: a callable that builds the env in the worker (an env instance
            cannot be sent to a process).
        policy: the policy, as for :class:`~tdrl.collectors.SyncDataCollector`
            (``None`` draws random actions).
        create_env_kwargs: keyword arguments for ``create_env_fn``.
        **kwargs: :class:`~tdrl.collectors.MultiaSyncDataCollector`'s keyword arguments
            (``frames_per_batch``, ``total_frames``, ``timeout``, ...).

    Raises:
        TypeError: ``create_env_fn`` is a list (use ``MultiAsyncCollector``) or an env.
        ValueError: as :class:`~tdrl.collectors.MultiaSyncDataCollector`.

    Examples:
        >>> from tdrl.collectors import AsyncCollector
        >>> from tdrl.testing import CountingEnv
        >>> collector = AsyncCollector(
        ...     CountingEnv, None, create_env_kwargs={"max_steps": 10}, frames_per_batch=3, total_frames=6
        ... )
        >>> [batch["next", "observation"].squeeze(-1).tolist() for batch in collector]
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
        >>> collector.shutdown()
    """

    def __init__(
        self,
        create_env_fn: Callable[..., EnvBase],
        policy: Any = None,
        *,
        create_env_kwargs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(create_env_fn, (list, tuple)):
            raise TypeError(
                f"AsyncCollector runs one env factory in one process, got a list of {len(create_env_fn)}: "
                f"use MultiAsyncCollector for several workers."
            )
        if "num_workers" in kwargs:
            raise TypeError("AsyncCollector runs a single worker: drop num_workers= (or use MultiAsyncCollector).")
        super().__init__([create_env_fn], policy, create_env_kwargs=[dict(create_env_kwargs or {})], **kwargs)
