"""The remote side of :class:`~tdrl.collectors.distributed.RayCollector`: one tdrl collector in a Ray actor.

:class:`CollectorWorker` is a plain class (Ray turns it into an actor with
``ray.remote(CollectorWorker).options(...)``), so it can be built and tested in-process.
It owns a :class:`~tdrl.collectors.SyncDataCollector` or a multi-process collector and
answers one request at a time, in the order they were sent: a batch, new weights, a
seed, a state_dict. It knows nothing of the other workers: trajectory ids are made
unique across workers, and batches are stacked, by the driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tensordict import TensorDictBase
from torch import nn

from tdrl._ray_transport import unpack
from tdrl.collectors.sync import DataCollectorBase, SyncDataCollector

__all__ = ["CollectorWorker"]

_TRAJ = ("collector", "traj_ids")


class CollectorWorker:
    """A tdrl collector that hands out one batch per :meth:`collect` call.

    Args:
        collector_class: the collector to build (``SyncDataCollector`` or a multi-process one).
        create_env_fn: what ``collector_class`` takes as its first argument (a factory,
            or a list of factories for a multi-process collector).
        policy: the policy (the same object for every batch; weights are loaded into it).
        policy_factory: called once here to build the policy when ``policy`` is None.
        collector_kwargs: the collector's other keyword arguments (``frames_per_batch``, ...).
        replay_buffer: a :class:`~tdrl.data.RayReplayBuffer` client: each batch is written
            into it here, and :meth:`collect` returns only what the driver counts.
        postproc: with ``replay_buffer``, applied here to each batch before it is written.
        index: this collector's index, and ``stride`` the number of collectors: with
            ``replay_buffer``, trajectory ids are made unique here as the driver does otherwise.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> worker = CollectorWorker(SyncDataCollector, CountingEnv, None, None, {"frames_per_batch": 4})
        >>> worker.collect()["next", "observation"].squeeze(-1)
        tensor([1., 2., 3., 4.])
        >>> worker.shutdown()
    """

    def __init__(
        self,
        collector_class: type[DataCollectorBase],
        create_env_fn: Any,
        policy: Any,
        policy_factory: Callable[[], Any] | None,
        collector_kwargs: dict[str, Any],
        replay_buffer: Any = None,
        postproc: Callable[[TensorDictBase], TensorDictBase] | None = None,
        index: int = 0,
        stride: int = 1,
    ) -> None:
        self.replay_buffer = replay_buffer
        self.postproc = postproc
        self.index, self.stride = index, stride
        self.collector_class = collector_class
        self.create_env_fn = create_env_fn
        self.policy = policy if policy is not None or policy_factory is None else policy_factory()
        self.collector_kwargs = collector_kwargs
        self._build()

    def _build(self) -> None:
        collector_class: Any = self.collector_class
        self.collector = collector_class(self.create_env_fn, self.policy, total_frames=-1, **self.collector_kwargs)
        self.batches = iter(self.collector)

    def ready(self) -> int:
        """The worker's process id (answering at all means the collector was built)."""
        return os.getpid()

    def collect(self, id_base: int = 0) -> TensorDictBase | dict[str, int]:
        """The collector's next batch; with a replay buffer, written into it and summed up.

        Args:
            id_base: with a replay buffer, added to the batch's trajectory ids before they
                are spread over the collectors (``(id + id_base) * stride + index``).

        Returns:
            The batch; with a replay buffer, ``{"frames": n, "next_id": k}``: the frames
            collected and the first trajectory id (before spreading) not used yet.
        """
        batch = next(self.batches)
        if self.replay_buffer is None:
            return batch
        frames = batch.numel()
        next_id = id_base
        ids = batch.get(_TRAJ, None)
        if ids is not None:
            ids = ids + id_base
            if ids.numel():
                next_id = int(ids.max()) + 1
            batch.set(_TRAJ, ids * self.stride + self.index)
        if self.postproc is not None:
            batch = self.postproc(batch)
        self.replay_buffer.extend(batch)
        return {"frames": frames, "next_id": next_id}

    def load_weights(self, weights: TensorDictBase | dict) -> None:
        """Load a TensorDict of parameters (``TensorDict.from_module``) or a ``state_dict`` into the policy."""
        policy = self.policy
        if not isinstance(policy, nn.Module):
            raise TypeError(
                f"RayCollector: weights were pushed but the worker's policy is a {type(policy).__name__}, "
                "not an nn.Module with parameters to load them into."
            )
        weights = unpack(weights, writable=False)  # read only: copied into the policy's parameters
        if isinstance(weights, TensorDictBase):
            weights.to_module(policy, inplace=True)
        else:
            policy.load_state_dict(weights)
        update = getattr(self.collector, "update_policy_weights_", None)
        if update is not None:  # a multi-process collector copies them on to its worker processes
            update()

    def set_seed(self, seed: int, static_seed: bool = False) -> int | None:
        """Seed the collector's envs; returns the seed for the next worker."""
        return self.collector.set_seed(seed, static_seed=static_seed)

    def state_dict(self) -> dict:
        """The collector's ``state_dict``."""
        return self.collector.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict`` from :meth:`state_dict`."""
        self.collector.load_state_dict(state_dict)

    def reset(self) -> None:
        """Start the next batch from freshly reset envs.

        A ``SyncDataCollector`` resets its env at the next batch after a
        ``load_state_dict`` (its counters are kept); a multi-process collector is rebuilt
        (new envs, the policy with its current weights).
        """
        if isinstance(self.collector, SyncDataCollector):
            self.collector.load_state_dict(self.collector.state_dict())
        else:
            self.shutdown()
            self._build()

    def shutdown(self) -> None:
        """Stop the collector (its envs, its worker processes)."""
        shutdown = getattr(self.collector, "shutdown", None)
        if shutdown is not None:
            shutdown()
