"""RayCollector: tdrl collectors in Ray actors, on one machine or a cluster, behind one iterator.

Each of the ``num_collectors`` actors runs a :class:`~tdrl.collectors.SyncDataCollector`
(or a multi-process collector over ``num_workers_per_collector`` envs) and hands out one
batch per request (see :mod:`tdrl.collectors.distributed._actor`). The driver (here; the
actors' bookkeeping and the fault policy below are :mod:`tdrl.collectors.distributed._pool`'s):

- asks every actor for ``frames_per_batch / num_collectors`` frames and stacks the answers
  (``sync=True``), or hands out each actor's ``frames_per_batch`` frames as soon as they are
  ready, asking that actor for its next batch at once (``sync=False``);
- counts frames as the local collectors do: batches are handed out while fewer than
  ``total_frames`` were, so ``len(collector) == ceil(total_frames / frames_per_batch)``, and
  never asks for a batch it will not hand out;
- makes trajectory ids unique across actors: actor ``i``'s id ``k`` becomes
  ``k * num_collectors + i`` (the multi-process collectors' rule, one level up);
- pushes weights through Ray's object store: one ``ray.put`` of a TensorDict of the
  parameters, whose reference every actor receives (one put, many gets).

Faults: an exception raised by the user's code in an actor (the env's, the policy's, a
``postproc``'s) is raised at once, the remote traceback in its message, and the collector is
shut down: it would raise again if retried, as TorchRL's, which never retries, raises it.
An actor that dies (or a node lost, or an object lost with it) is killed and built again, up to
``max_restarts`` times per collector; the batch it owed is asked of the new actor (the
frames of the lost batch were never handed out: nothing is duplicated), which first
loads the newest weights pushed and, if the collector was seeded, a seed of its own.
Beyond ``max_restarts`` the collector raises ``RuntimeError`` naming the collector and
the cause, and kills its actors. Every wait has a ``timeout``: a ``TimeoutError`` leaves
the request in flight, and the next ``next()`` waits for it again. ``KeyboardInterrupt``
during ``next()`` shuts the collector down (no actor is left behind) before it propagates.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl._ray import acquire_runtime, import_ray, init_config, release_runtime
from tdrl._ray_transport import pack
from tdrl.collectors.distributed import _plan
from tdrl.collectors.distributed._actor import CollectorWorker
from tdrl.collectors.distributed._plan import buffer_client, plan_actors
from tdrl.collectors.distributed._pool import ActorPool, check_resources
from tdrl.collectors.distributed._weights import cpu_weights, worker_indices
from tdrl.collectors.sync import DataCollectorBase, SyncDataCollector
from tdrl.collectors.utils import split_trajectories
from tdrl.envs.common import EnvBase
from tdrl.envs.utils import ExplorationType

__all__ = ["RayCollector", "DEFAULT_REMOTE_CONFIG"]

DEFAULT_REMOTE_CONFIG: dict[str, Any] = _plan.DEFAULT_REMOTE_CONFIG
"""``ray.remote`` options of each collector actor when ``remote_configs`` is not given: one CPU, no GPU.

TorchRL's default also asks for a fifth of a GPU, which a machine without one cannot give.
"""

_CLOSED = "RayCollector was shut down; build a new one to collect again."


class _Batches(Iterator[TensorDictBase]):
    """The collector's iterator; each ``next()`` asks it for a batch (and may be retried after a timeout)."""

    def __init__(self, next_batch: Callable[[], TensorDictBase]) -> None:
        self._next_batch = next_batch

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> TensorDictBase:
        return self._next_batch()


class RayCollector(DataCollectorBase):
    """Collect with ``num_collectors`` tdrl collectors running as Ray actors, locally or on a cluster.

    Takes TorchRL's ``RayCollector`` arguments (and :class:`~tdrl.collectors.SyncDataCollector`'s
    meaning for the shared ones), plus ``address``, ``max_restarts`` and ``timeout``.

    Args:
        create_env_fn: a callable building an env, or a list of them (one per collector).
        policy: the policy (sent once to the object store, loaded by every actor), or None
            for random actions (or with ``policy_factory``).
        policy_factory: a callable (or one per collector) that builds the policy inside each
            actor, for policies that cannot be pickled. Exclusive with ``policy``.
        frames_per_batch: frames in each batch handed out.
        total_frames: stop after this many frames (rounded up to whole batches); -1: never.
        device: default for the other three devices, on the actors (a value or one per collector).
        storing_device: where the actors store batches.
        env_device: where the actors' envs run.
        policy_device: where the actors' policies run.
        max_frames_per_traj: truncate episodes after this many steps (-1 or None: no limit).
        init_random_frames: the first frames are collected with random actions; each
            collector takes ``init_random_frames // num_collectors`` of them.
        reset_at_each_iter: every batch starts from reset envs.
        postproc: applied to each batch on the driver, after ``split_trajs``.
        split_trajs: pad each batch per trajectory (on the driver).
        exploration_type: the exploration mode the policies run under.
        collector_class: the collector each actor runs: ``SyncDataCollector`` (default),
            ``MultiSyncDataCollector``, ``MultiaSyncDataCollector`` (or a subclass), or
            TorchRL's names ``"single"``, ``"sync"``, ``"async"``.
        collector_kwargs: more keyword arguments for ``collector_class`` (a dict, or one
            per collector), e.g. ``create_env_kwargs`` or ``mp_start_method``.
        num_workers_per_collector: envs (worker processes) per actor, for a multi-process
            ``collector_class``.
        sync: ``True``: each batch stacks ``frames_per_batch / num_collectors`` frames of
            every collector (shape ``[num_collectors, *collector_batch]``), all collected
            with the same weights. ``False`` (default): each batch is one collector's
            ``frames_per_batch`` frames, first ready first served.
        ray_init_config: keyword arguments for ``ray.init`` (used only if Ray is not
            initialized yet).
        remote_configs: ``ray.remote`` options of each actor (a dict, or one per collector),
            e.g. ``{"num_cpus": 2, "num_gpus": 0.5}``. The default, ``{"num_cpus": 1}``,
            asks for no GPU (TorchRL's default also asks ``num_gpus=0.2`` when CUDA is
            visible on the driver, which cannot be scheduled on a cluster without GPUs).
        num_collectors: the number of actors (default: the length of ``create_env_fn``, or 1).
        update_after_each_batch: push the policy's weights to a collector before each of its batches.
        max_weight_update_interval: push the policy's weights to a collector once it has
            collected more than this many batches since its last push (-1: only when
            :meth:`update_policy_weights_` is called).
        replay_buffer: a :class:`~tdrl.data.RayReplayBuffer` (or its ``client()``): each
            actor writes its batches straight into it (after ``postproc``, which then runs on
            the actors), trajectory ids already made unique, and iterating yields ``None``
            once per batch (TorchRL's contract): the learner samples from the buffer. An
            in-process buffer is refused (each actor would fill its own copy), and so is
            ``split_trajs``. If an actor dies after writing a batch but before answering, the
            batch it collects again is written too (other frames, not a duplicate), so the
            buffer may hold up to one batch more than the collector counted.
        address: the Ray cluster to connect to: ``"auto"`` (the one running on this
            machine), ``"host:port"``, or ``"local"`` (always start a new local one). None
            (default): ``ray_init_config["address"]`` or Ray's own choice (``RAY_ADDRESS``,
            else the cluster last started on this machine, else a new local one). Ignored if
            Ray is already initialized. A Ray runtime the collector started is shut down by
            :meth:`shutdown`; one it found running is left running.
        max_restarts: how many times each collector's actor is rebuilt after dying (a
            crash, a kill, a lost node) before the collector gives up with ``RuntimeError``.
            An exception raised by the env's or the policy's code is not retried: it is
            raised at once (see Raises).
        timeout: seconds to wait for an actor (to start, or for a batch) before ``TimeoutError``.

    Raises:
        ValueError: inconsistent arguments (each message names them and the fix), e.g.
            ``frames_per_batch`` not a multiple of ``num_collectors`` with ``sync=True``,
            or a local cluster too small for ``remote_configs``.
        TypeError: ``create_env_fn`` is not callable, or ``collector_class`` is not a tdrl collector.
        ImportError: Ray is not installed (``pip install "tdrl[ray]"``).
        RuntimeError: an actor could not be built, or failed more than ``max_restarts`` times.
        ray.exceptions.RayTaskError: the env's or the policy's code raised in an actor (the
            first time: it is not retried); the error is also an instance of the raised
            exception's class (``except ValueError`` catches a remote ``ValueError``), its
            message holds the remote traceback, and the collector is shut down.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> collector = RayCollector(CountingEnv, None, frames_per_batch=8, total_frames=16, num_collectors=2,
        ...     sync=True, ray_init_config={"address": "local", "num_cpus": 2, "include_dashboard": False})
        >>> [batch.batch_size for batch in collector]
        [torch.Size([2, 4]), torch.Size([2, 4])]
        >>> collector.shutdown()  # kills the actors and stops the local Ray runtime it started
        >>> # on a cluster: RayCollector(make_env, policy, frames_per_batch=..., address="auto")
    """

    def __init__(
        self,
        create_env_fn: Callable[..., EnvBase] | Sequence[Callable[..., EnvBase]],
        policy: Callable[[TensorDictBase], TensorDictBase] | nn.Module | None = None,
        *,
        policy_factory: Callable[[], Any] | Sequence[Callable[[], Any]] | None = None,
        frames_per_batch: int,
        total_frames: int = -1,
        device: Any = None,
        storing_device: Any = None,
        env_device: Any = None,
        policy_device: Any = None,
        max_frames_per_traj: int | None = -1,
        init_random_frames: int | None = -1,
        reset_at_each_iter: bool = False,
        postproc: Callable[[TensorDictBase], TensorDictBase] | None = None,
        split_trajs: bool = False,
        exploration_type: ExplorationType = ExplorationType.RANDOM,
        collector_class: type[DataCollectorBase] | str = SyncDataCollector,
        collector_kwargs: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        num_workers_per_collector: int = 1,
        sync: bool = False,
        ray_init_config: dict[str, Any] | None = None,
        remote_configs: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        num_collectors: int | None = None,
        update_after_each_batch: bool = False,
        max_weight_update_interval: int = -1,
        replay_buffer: Any = None,
        address: str | None = None,
        max_restarts: int = 3,
        timeout: float = 600.0,
    ) -> None:
        self._owns_runtime = False
        self._closed: str | None = None
        if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise ValueError(f"RayCollector: frames_per_batch must be a positive int, got {frames_per_batch!r}.")
        if not isinstance(total_frames, int) or (total_frames < 1 and total_frames != -1):
            raise ValueError(f"RayCollector: total_frames must be -1 (forever) or > 0, got {total_frames!r}.")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"RayCollector: max_restarts must be an int >= 0, got {max_restarts!r}.")
        if not timeout > 0:
            raise ValueError(f"RayCollector: timeout must be a positive number of seconds, got {timeout!r}.")
        client = buffer_client(replay_buffer, split_trajs)
        plan = plan_actors(
            create_env_fn,
            policy,
            policy_factory,
            frames_per_batch=frames_per_batch,
            sync=sync,
            num_collectors=num_collectors,
            collector_class=collector_class,
            collector_kwargs=collector_kwargs,
            num_workers_per_collector=num_workers_per_collector,
            remote_configs=remote_configs,
            device_args=(device, storing_device, env_device, policy_device),
            max_frames_per_traj=max_frames_per_traj,
            init_random_frames=init_random_frames,
            reset_at_each_iter=reset_at_each_iter,
            exploration_type=exploration_type,
        )
        self.num_collectors = n = len(plan.env_fns)
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.policy = policy
        self.policy_factory = policy_factory
        self.postproc = postproc
        self.split_trajs = split_trajs
        self.replay_buffer = replay_buffer
        self.collector_class = plan.collector_class
        self.num_workers_per_collector = num_workers_per_collector
        self.update_after_each_batch = update_after_each_batch
        self.max_weight_update_interval = max_weight_update_interval
        self.max_restarts = max_restarts
        self.timeout = float(timeout)
        self._sync = bool(sync)
        self._frames = 0
        self._iter = 0
        self._iterator = None
        self._round: dict[int, TensorDictBase] = {}  # sync: the batches of the current round received so far
        self._since_update = [0] * n  # batches each collector handed out since its last weight push

        ray = self._ray = import_ray("tdrl.collectors.distributed")
        self._owns_runtime = acquire_runtime(init_config(ray_init_config, address))
        name = f"tdrl-RayCollector-{uuid.uuid4().hex[:8]}"
        pool = ActorPool(
            ray, plan.remote_configs, name=name, timeout=self.timeout, max_restarts=max_restarts, close=_closer(self)
        )
        self._pool = pool
        try:
            check_resources(ray, plan.remote_configs, self.timeout, strict=self._owns_runtime)
            policy_ref = ray.put(policy) if policy is not None else None
            remote_postproc = postproc if client is not None else None
            specs = [
                (plan.collector_class, fn, policy_ref, factory, kwargs, client, remote_postproc, i, n)
                for i, (fn, factory, kwargs) in enumerate(
                    zip(plan.env_fns, plan.policy_factories, plan.collector_kwargs)
                )
            ]
            pool.start(ray.remote(CollectorWorker), specs)
        except BaseException:
            self.shutdown()
            raise

    # --- batches ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TensorDictBase]:
        return _Batches(self._next_batch)

    def _next_batch(self) -> TensorDictBase:
        self._check_open()
        try:
            batch = self._collect_sync() if self._sync else self._collect_async()
            if batch is None:  # written into the replay buffer (postproc ran on the actors); yield None
                return batch  # type: ignore[return-value]
            if self.split_trajs:
                batch = split_trajectories(batch)
            if self.postproc is not None:
                batch = self.postproc(batch)
        except KeyboardInterrupt:
            self.shutdown()
            raise
        return batch

    def _push_due(self, i: int) -> bool:
        if self.update_after_each_batch:
            return True
        interval = self.max_weight_update_interval
        return interval >= 0 and self._since_update[i] > interval

    def _collect_sync(self) -> TensorDictBase | None:
        n = self.num_collectors
        pool = self._pool
        if not pool.pending and not self._round:  # a new round (else: finish one a timeout interrupted)
            if 0 <= self.total_frames <= self._frames:
                raise StopIteration
            due = [i for i in range(n) if self._push_due(i)]
            if due:
                self.update_policy_weights_(worker_ids=due)
            for i in range(n):
                pool.pending[i] = pool.ask(i)
        while pool.pending:
            i = pool.wait_one()
            batch = pool.take(i)
            if batch is not None:
                self._round[i] = batch
        parts = [self._round.pop(i) for i in range(n)]
        if self.replay_buffer is not None:
            self._frames += sum(part["frames"] for part in parts)
            self._iter += 1
            self._since_update = [k + 1 for k in self._since_update]
            return None
        batch = cast(TensorDictBase, torch.stack(cast("list[torch.Tensor]", parts), 0))  # tensordict's stack
        self._frames += batch.numel()
        self._iter += 1
        self._since_update = [k + 1 for k in self._since_update]
        return batch

    def _wanted(self, busy: int) -> bool:
        """Whether one more batch is needed, counting the ``busy`` ones in flight."""
        return self.total_frames < 0 or self._frames + busy * self.frames_per_batch < self.total_frames

    def _collect_async(self) -> TensorDictBase | None:
        pool = self._pool
        while True:
            if 0 <= self.total_frames <= self._frames:
                raise StopIteration
            for i in range(self.num_collectors):
                if i not in pool.pending and self._wanted(len(pool.pending)):
                    if self._push_due(i):
                        self.update_policy_weights_(worker_ids=[i])
                    pool.pending[i] = pool.ask(i)
            i = pool.wait_one()
            batch = pool.take(i)
            if batch is None:  # its actor was rebuilt and asked again
                continue
            self._frames += batch["frames"] if isinstance(batch, dict) else batch.numel()
            self._iter += 1
            self._since_update[i] += 1
            if self._wanted(len(pool.pending)) and not self._push_due(i):  # its next batch, while the caller works
                pool.pending[i] = pool.ask(i)
            return None if isinstance(batch, dict) else batch

    # --- control ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed is not None:
            raise RuntimeError(self._closed)

    @property
    def remote_collectors(self) -> list[Any]:
        """The Ray actor handles, one per collector (a rebuilt actor replaces its predecessor)."""
        return list(self._pool.actors)

    @property
    def num_workers(self) -> int:
        """The number of collectors (TorchRL's name)."""
        return self.num_collectors

    def update_policy_weights_(
        self, policy_or_weights: TensorDictBase | nn.Module | dict | None = None, *, worker_ids: Any = None
    ) -> None:
        """Send new weights to the collectors: one ``ray.put``, then every actor loads that object.

        Args:
            policy_or_weights: a module, a TensorDict of parameters (``TensorDict.from_module``)
                or a ``state_dict``; None: the ``policy`` given at construction (a no-op
                without one).
            worker_ids: the collectors to update (an int or a list); None: all.

        An idle collector has loaded the weights when this returns; one busy collecting
        (``sync=False``) loads them before its next batch.
        """
        self._check_open()
        source = self.policy if policy_or_weights is None else policy_or_weights
        weights = cpu_weights(source)
        if weights is None:
            if policy_or_weights is None:
                return  # no module to take weights from (random actions, or a policy_factory)
            raise TypeError(
                f"RayCollector.update_policy_weights_: expected a module, a TensorDict or a state_dict, "
                f"got {type(source).__name__}."
            )
        ids = range(self.num_collectors) if worker_ids is None else worker_indices(worker_ids, self.num_collectors)
        # flat numpy arrays: cheaper to put and to read than a pickled TensorDict (bench_ray_transport)
        idle = self._pool.send_weights(pack(weights), ids)  # also what a rebuilt actor loads
        for i in ids:
            self._since_update[i] = 0
        self._pool.wait_loaded(idle)

    def set_seed(self, seed: int, static_seed: bool = False) -> int | None:
        """Seed collector ``i`` with the seed collector ``i - 1`` hands on (distinct seeds); returns the next one."""
        self._check_open()
        next_seed: int | None = seed
        for i in range(self.num_collectors):
            self._pool.seeds[i] = next_seed
            next_seed = self._pool.call(i, "set_seed", next_seed, static_seed)
        return next_seed

    def reset(self) -> None:
        """Drop the batches in flight and start every collector's next batch from reset envs."""
        self._check_open()
        pool = self._pool
        pool.drain()
        self._round.clear()
        for i in range(self.num_collectors):
            pool.call(i, "reset")
            pool.id_base[i] = pool.next_id[i]

    def state_dict(self) -> dict:
        """The frame counters, each collector's ``state_dict`` and the policy's."""
        self._check_open()
        out: dict = {
            "frames": self._frames,
            "iter": self._iter,
            "traj_id_base": list(self._pool.id_base),
            "next_traj_id": list(self._pool.next_id),
            "workers": [self._pool.call(i, "state_dict") for i in range(self.num_collectors)],
        }
        if isinstance(self.policy, nn.Module):
            out["policy_state_dict"] = self.policy.state_dict()
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume from :meth:`state_dict` (the batches in flight are dropped)."""
        self._check_open()
        missing = [k for k in ("frames", "iter", "workers") if k not in state_dict]
        if missing:
            raise KeyError(f"RayCollector.load_state_dict: missing {missing}; keys are {sorted(state_dict)}.")
        workers = state_dict["workers"]
        if len(workers) != self.num_collectors:
            raise ValueError(
                f"RayCollector.load_state_dict: the state holds {len(workers)} collectors' states, "
                f"this collector has {self.num_collectors}."
            )
        pool = self._pool
        pool.drain()
        self._round.clear()
        for i, worker_state in enumerate(workers):
            pool.call(i, "load_state_dict", worker_state)
        self._frames, self._iter = int(state_dict["frames"]), int(state_dict["iter"])
        pool.id_base = list(state_dict.get("traj_id_base", pool.id_base))
        pool.next_id = list(state_dict.get("next_traj_id", pool.next_id))
        if "policy_state_dict" in state_dict and isinstance(self.policy, nn.Module):
            self.policy.load_state_dict(state_dict["policy_state_dict"])
            self.update_policy_weights_()

    def shutdown(self) -> None:
        """Kill the actors this collector created; stop the Ray runtime if it started it (idempotent)."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.kill_all()
        if hasattr(self, "_round"):
            self._round.clear()
        if getattr(self, "_owns_runtime", False):
            self._owns_runtime = False
            release_runtime(True)
        if getattr(self, "_closed", None) is None:
            self._closed = _CLOSED

    def _close(self, reason: str) -> None:
        """Shut down, and make every later call raise ``RuntimeError(reason)``."""
        self.shutdown()
        self._closed = reason

    def __enter__(self) -> RayCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (
            f"RayCollector(num_collectors={self.num_collectors}, collector_class={self.collector_class.__name__}, "
            f"frames_per_batch={self.frames_per_batch}, total_frames={self.total_frames}, sync={self._sync})"
        )


def _closer(collector: RayCollector) -> Callable[[str], None]:
    """``collector._close`` through a weak reference: the pool must not keep its collector alive.

    Without a reference cycle, a collector nobody holds is shut down at once (``__del__``),
    its actors killed, not whenever the garbage collector runs.
    """
    ref = weakref.ref(collector)

    def close(reason: str) -> None:
        owner = ref()
        if owner is not None:
            owner._close(reason)

    return close
