"""Multi-process collectors: each worker process runs its own env and a copy of the policy.

- :class:`MultiSyncDataCollector`: every batch gathers ``frames_per_batch / num_workers``
  frames from each worker, collected at the same time; the workers then wait for the
  next request, so every batch is collected with the latest weights pushed.
- :class:`MultiaSyncDataCollector`: each batch is one worker's ``frames_per_batch``
  frames, handed out as soon as a worker is done; that worker starts its next batch at
  once (while the caller trains), so batches may lag the newest weights by one push.

A worker runs a :class:`~tdrl.collectors.SyncDataCollector` and writes its batch into
shared memory allocated after its first batch; a batch costs one short message each
way. The policy goes to each worker once (cloudpickle); ``update_policy_weights_()``
copies the parent policy's ``state_dict`` into a shared-memory copy that the workers
load before their next batch. Trajectory ids are made unique across workers
(``id * num_workers + worker``).

The worker's side is in ``_multi_worker.py``, the iterators (batches, or whole episodes
with ``trajs_per_batch``) in ``_multi_iterators.py``.

Faults (the protocol is in ``tdrl/_workers/``):

- a worker that raises makes the parent raise ``RuntimeError`` with its traceback; one
  that dies, with its exit code; one that hangs, ``TimeoutError`` naming it after
  ``timeout`` seconds. A collector whose worker failed refuses further use, with a
  message saying why (``shutdown()`` and build a new one), as does a shut-down one;
- a ``next()`` interrupted while it waits for the workers (Ctrl-C, ``TimeoutError``)
  resumes: the following ``next()`` hands out the batch that was being collected, so no
  batch is skipped or handed out twice (only an interrupt that lands while ``next()``
  returns, after the batch was taken, can lose that one batch);
- ``shutdown()``, garbage collection and interpreter exit stop the workers; a worker
  whose parent is killed exits by itself. A worker may run a
  :class:`~tdrl.envs.ParallelEnv` of its own.

Usage (see the classes' examples)::

    collector = MultiSyncDataCollector([make_env] * 4, policy, frames_per_batch=4000, total_frames=1_000_000)
    for batch in collector:          # shape [4, 1000]
        train(batch)
        collector.update_policy_weights_()
    collector.shutdown()
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl._workers import STARTUP_TIMEOUT, VOID, StartMethod, WorkerPool
from tdrl.collectors._episodes import check_episode_args
from tdrl.collectors._multi_iterators import _Batches, _Episodes
from tdrl.collectors._multi_worker import _build_collector as _build_collector
from tdrl.collectors._multi_worker import _collector_worker
from tdrl.collectors._multi_worker import _CollectorWorker as _CollectorWorker
from tdrl.collectors._policy_transforms import check_auto_register_flag
from tdrl.collectors.sync import DataCollectorBase
from tdrl.collectors.utils import split_trajectories
from tdrl.collectors.weight_update import WeightUpdaterBase
from tdrl.envs._validation import _validation
from tdrl.envs.common import EnvBase
from tdrl.envs.utils import ExplorationType

__all__ = [
    "MultiCollector",
    "MultiSyncDataCollector",
    "MultiaSyncDataCollector",
    "MultiSyncCollector",
    "MultiAsyncCollector",
]

_TRAJ = ("collector", "traj_ids")


def _per_worker(cls: str, name: str, value: Any, n: int) -> list:
    """``value`` for each of ``n`` workers: a list/tuple gives one each, anything else is shared."""
    if not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) != n:
        raise ValueError(
            f"{cls}: {name} has {len(value)} entries for {n} workers; pass one device per worker or a single one."
        )
    return list(value)


def _summary(err: BaseException) -> str:
    """The last line of an error that holds a worker's traceback: the exception itself."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


_SYNC_MISSING = (
    "MultiCollector: pass sync=True (every batch gathers frames from all workers at once: "
    "MultiSyncCollector) or sync=False (each batch is one worker's, handed out as soon as it is ready: "
    "MultiAsyncCollector), or build one of those two classes directly."
)


class MultiCollector(DataCollectorBase):
    """The multi-process collector, synchronous or not as ``sync`` says (TorchRL's unified name).

    ``MultiCollector(..., sync=True)`` builds a :class:`MultiSyncDataCollector` and
    ``sync=False`` a :class:`MultiaSyncDataCollector`; both are subclasses of this class,
    which holds their worker processes, weights and bookkeeping. The other arguments are
    those of the class built.

    Args:
        *args: the positional arguments of the class built (``create_env_fn``, ``policy``).
        sync: ``True`` for :class:`MultiSyncDataCollector`, ``False`` for
            :class:`MultiaSyncDataCollector`. Required when building ``MultiCollector``
            itself; a subclass accepts it when it agrees with the subclass.
        **kwargs: the keyword arguments of the class built.

    Raises:
        TypeError: ``MultiCollector`` is built without ``sync``.
        ValueError: a subclass is given a ``sync`` that contradicts it.

    Examples:
        >>> from tdrl.collectors import MultiCollector, MultiSyncCollector
        >>> from tdrl.testing import CountingEnv
        >>> collector = MultiCollector([CountingEnv, CountingEnv], None, sync=True, frames_per_batch=4, total_frames=4)
        >>> type(collector).__name__, isinstance(collector, MultiCollector)
        ('MultiSyncDataCollector', True)
        >>> next(iter(collector)).batch_size
        torch.Size([2, 2])
        >>> collector.shutdown()
    """

    _per_worker_frames: Callable[[int, int], int]
    _sync: bool | None = None  # what a concrete subclass is

    def __new__(cls, *args: Any, sync: bool | None = None, **kwargs: Any) -> MultiCollector:
        if cls is MultiCollector:
            if sync is None:
                raise TypeError(_SYNC_MISSING)
            cls = MultiSyncDataCollector if sync else MultiaSyncDataCollector
        return super().__new__(cls)

    def __init__(
        self,
        create_env_fn: Sequence[Callable[..., EnvBase]] | Callable[..., EnvBase],
        policy: Any = None,
        *,
        sync: bool | None = None,
        num_workers: int | None = None,
        frames_per_batch: int,
        total_frames: int = -1,
        device: Any = None,
        storing_device: Any = None,
        policy_device: Any = None,
        env_device: Any = None,
        create_env_kwargs: dict | list[dict] | tuple[dict, ...] | None = None,
        max_frames_per_traj: int | None = None,
        init_random_frames: int | None = None,
        reset_at_each_iter: bool = False,
        postproc: Callable[[TensorDictBase], TensorDictBase] | None = None,
        split_trajs: bool = False,
        exploration_type: ExplorationType = ExplorationType.RANDOM,
        reset_when_done: bool = True,
        update_at_each_batch: bool = False,
        progress_bar: bool = False,
        mp_start_method: StartMethod = None,
        timeout: float = 600.0,
        trajs_per_batch: int | None = None,
        traj_format: str | None = None,
        weight_updater: WeightUpdaterBase | Callable[[], WeightUpdaterBase] | None = None,
        auto_register_policy_transforms: bool | None = None,
        compact_obs: bool = False,
    ) -> None:
        cls = type(self).__name__
        check_auto_register_flag(auto_register_policy_transforms, cls)
        if not isinstance(compact_obs, bool):
            raise TypeError(
                f"{cls}: compact_obs must be True or False, got {compact_obs!r} ({type(compact_obs).__name__})."
            )
        self.compact_obs = compact_obs
        if sync is not None and self._sync is not None and bool(sync) != self._sync:
            raise ValueError(
                f"{cls} collects {'synchronously' if self._sync else 'asynchronously'} but got sync={sync!r}: "
                f"drop sync=, or build MultiCollector(..., sync={sync!r})."
            )
        self.traj_format = check_episode_args(cls, trajs_per_batch, traj_format, split_trajs)
        self.trajs_per_batch = trajs_per_batch
        fns = list(create_env_fn) if isinstance(create_env_fn, (list, tuple)) else None
        if fns is None:
            if num_workers is None:
                raise ValueError(f"{cls}: pass a list of create_env_fn (one per worker), or num_workers=.")
            fns = [create_env_fn] * num_workers
        elif num_workers is not None and num_workers != len(fns):
            raise ValueError(f"{cls}: num_workers={num_workers} but {len(fns)} create_env_fn were given.")
        for fn in fns:
            if isinstance(fn, EnvBase) or not callable(fn):
                raise TypeError(
                    f"{cls}: create_env_fn must be callables that build an env (each worker builds its own), "
                    f"got a {type(fn).__name__}. Pass e.g. lambda: GymEnv('Pendulum-v1')."
                )
        self.num_workers = n = len(fns)
        if n < 1:
            raise ValueError(f"{cls}: needs at least one worker.")
        if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise ValueError(f"{cls}: frames_per_batch must be a positive int, got {frames_per_batch!r}.")
        if not isinstance(total_frames, int) or (total_frames < 1 and total_frames != -1):
            raise ValueError(f"{cls}: total_frames must be -1 (run forever) or a positive int, got {total_frames!r}.")
        if isinstance(policy, nn.Module) and any(
            isinstance(p, nn.parameter.UninitializedParameter) for p in policy.parameters()
        ):
            raise ValueError(
                f"{cls}: the policy has uninitialized (lazy) parameters, which cannot be sent to the workers. "
                f"Run it once first, e.g. policy(env.reset()), then build the collector."
            )
        kwargs_list = (
            [dict(k) for k in create_env_kwargs]
            if isinstance(create_env_kwargs, (list, tuple))
            else [dict(create_env_kwargs or {}) for _ in range(n)]
        )
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.postproc = postproc
        self.split_trajs = split_trajs
        self.reset_at_each_iter = reset_at_each_iter
        self.update_at_each_batch = update_at_each_batch
        self.progress_bar = progress_bar
        self.policy = policy
        self.timeout = timeout
        self._frames = 0
        self._iter = 0
        self._iterator = None
        self.weight_updater = weight_updater
        worker_frames = self._per_worker_frames(frames_per_batch, n)
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
            cloudpickle = pickle
        # a device argument may be one device for all workers or a sequence of one per worker (TorchRL's)
        devices = {
            name: _per_worker(cls, name, value, n)
            for name, value in (
                ("device", device),
                ("storing_device", storing_device),
                ("policy_device", policy_device),
                ("env_device", env_device),
            )
        }
        payloads = []
        for w, (fn, kw) in enumerate(zip(fns, kwargs_list)):
            spec = {
                "create_env_fn": fn,
                "policy": policy,
                "create_env_kwargs": kw,
                "frames_per_batch": worker_frames,
                "total_frames": -1,
                **{name: values[w] for name, values in devices.items()},
                "max_frames_per_traj": max_frames_per_traj,
                "init_random_frames": (init_random_frames or 0) // n,
                "reset_at_each_iter": reset_at_each_iter,
                "exploration_type": exploration_type,
                "reset_when_done": reset_when_done,
                "auto_register_policy_transforms": auto_register_policy_transforms,
                "compact_obs": compact_obs,
            }
            payloads.append(cloudpickle.dumps(spec))
        self._workers = WorkerPool(cls, _collector_worker, payloads, mp_start_method, timeout, close="shutdown()")
        try:
            self._workers.started(max(timeout, STARTUP_TIMEOUT))
            self._weights = None
            self._stale = [False] * n  # the worker has not loaded the latest pushed weights
            if isinstance(policy, nn.Module):
                self._weights = {k: v.detach().clone().share_memory_() for k, v in policy.state_dict().items()}
                self._workers.call(range(n), "weights", self._weights)
        except BaseException:
            self._workers.close(grace=1.0)
            raise
        self._shared: list[TensorDictBase | None] = [None] * n  # each worker's batch buffer, shared
        self._buffer_used = [False] * n  # whether the worker writes into it

    @property
    def _procs(self) -> list:
        """The worker processes (for tests and diagnostics)."""
        return self._workers.procs

    def __iter__(self) -> Iterator[TensorDictBase]:
        bar = self._progress(self.progress_bar)
        if self.trajs_per_batch is not None:
            return _Episodes(self, bar)
        return _Batches(self._next_batch, bar)

    def _next_batch(self) -> TensorDictBase:
        return self._finish(self._collect()[0])

    def _collect(self) -> tuple[TensorDictBase, int | None]:
        """The next batch as the workers wrote it (ids made unique), and the worker it is from (None: all)."""
        raise NotImplementedError

    # --- messaging ------------------------------------------------------------------------
    def _request(self, i: int) -> int:
        """Ask worker ``i`` for a batch (loading the pushed weights first if it has not yet)."""
        buffer = None if self._buffer_used[i] else self._shared[i]  # sent until the worker used it
        checks = (_validation.actions, _validation.outputs)  # set_validation reaches the workers
        seq = self._workers.send(i, "collect", (self._stale[i], buffer, checks))
        self._stale[i] = False
        return seq

    def _results(self, requests: list[tuple[int, int]]) -> list:
        """The payloads of ``collect`` requests, kept filed until :meth:`WorkerPool.take`."""
        try:
            return self._workers.results(requests, keep=True)
        except RuntimeError as err:  # a worker raised or died: its collector is gone
            self._workers.fail(f"a worker failed while collecting ({_summary(err)}; its traceback was raised then)")
            raise

    def _buffer(self, i: int, payload: Any) -> TensorDictBase:
        """Worker ``i``'s batch: in its shared buffer (``payload`` None), or ``payload``, by value.

        A batch that comes by value (the first) becomes the worker's shared buffer, which
        the next requests carry until the worker uses it.
        """
        self._buffer_used[i] = payload is None
        if payload is not None:
            self._shared[i] = payload.share_memory_()  # (a copy of the worker's: ours to share)
        batch = self._shared[i]
        if batch is None:
            raise RuntimeError(f"{type(self).__name__}: worker {i} answered without a batch buffer.")
        return batch

    def _unique_ids(self, batch: TensorDictBase, worker: int | torch.Tensor) -> None:
        ids = batch.get(_TRAJ, None)
        if ids is not None:
            batch.set(_TRAJ, ids * self.num_workers + worker)

    def _finish(self, batch: TensorDictBase) -> TensorDictBase:
        if self.split_trajs:
            batch = split_trajectories(batch)
        if self.postproc is not None:
            batch = self.postproc(batch)
        return batch

    # --- control --------------------------------------------------------------------------
    def update_policy_weights_(self, policy_or_weights: Any = None, *, worker_ids: Any = None) -> None:
        """Push the parent policy's weights (or the given ``state_dict`` / module) to every worker.

        The weights are copied into shared memory now; each worker loads them before its
        next batch (a worker busy collecting finishes its current batch first). A collector
        built with ``weight_updater=`` hands the call (and ``worker_ids``) to it instead.

        Raises:
            TypeError: ``worker_ids`` without a ``weight_updater``.
        """
        self._workers.check()
        if not self._push_with_updater(policy_or_weights, worker_ids):
            self._push_shared(policy_or_weights)

    def _push_shared(self, policy_or_weights: Any = None) -> None:
        """Copy the weights into the shared memory the workers load from before their next batch."""
        if self._weights is None:
            return
        if policy_or_weights is None:
            policy_or_weights = self.policy
        state = policy_or_weights.state_dict() if isinstance(policy_or_weights, nn.Module) else policy_or_weights
        missing = [k for k in self._weights if k not in state]
        if missing:
            raise KeyError(f"{type(self).__name__}.update_policy_weights_: the weights lack {missing}.")
        with torch.no_grad():
            for key, shared in self._weights.items():
                shared.copy_(state[key])
        self._stale = [True] * self.num_workers

    def set_seed(self, seed: int, static_seed: bool = False) -> int | None:
        """Seed worker ``i``'s env with the seed worker ``i - 1`` hands on; returns the next one."""
        for i in range(self.num_workers):
            seed = self._workers.call([i], "seed", seed)[0]
        return seed

    def state_dict(self) -> dict:
        """Frame and batch counters, and the policy's ``state_dict``."""
        out: dict = {"frames": self._frames, "iter": self._iter}
        if isinstance(self.policy, nn.Module):
            out["policy_state_dict"] = self.policy.state_dict()
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the counters and the policy (pushed to the workers)."""
        self._frames = int(state_dict["frames"])
        self._iter = int(state_dict["iter"])
        if "policy_state_dict" in state_dict and isinstance(self.policy, nn.Module):
            self.policy.load_state_dict(state_dict["policy_state_dict"])
            self._workers.check()
            self._push_shared()

    def shutdown(self) -> None:
        """Stop the workers (idempotent; also run on garbage collection and at exit)."""
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.close(closed="shut down")

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass


_MultiCollectorBase = MultiCollector  # the name this class had before it took TorchRL's


class MultiSyncDataCollector(MultiCollector):
    """Collect each batch from ``num_workers`` processes at once; batches are stacked per worker.

    Takes :class:`~tdrl.collectors.SyncDataCollector`'s arguments, plus:

    Args:
        create_env_fn: one env factory per worker (or one factory with ``num_workers``).
        num_workers: the number of worker processes (when a single factory is given).
        update_at_each_batch: push the policy's weights before every batch.
        cat_results: ``"stack"`` (default): batches of shape ``[num_workers, *B, T]``;
            an int: concatenate the workers' batches along that dim instead.
        mp_start_method: "fork", "spawn" or "forkserver" (default: the platform's).
        timeout: seconds to wait for a worker's batch before raising ``TimeoutError``.
        trajs_per_batch: yield batches of this many whole episodes, as
            :class:`~tdrl.collectors.SyncDataCollector` does (TorchRL's multi-process
            collectors take it too). The episodes are assembled here, in the parent, from
            the workers' batches (their trajectory ids are unique across workers): an
            episode may span several batches, and a yielded batch may hold episodes of
            several workers, in the order they ended. ``frames_per_batch`` then only sets
            how many steps each round of requests collects; ``total_frames`` still bounds
            the frames collected.
        traj_format: with ``trajs_per_batch``: ``"padded"`` (default) or ``"cat"``, as
            for :class:`~tdrl.collectors.SyncDataCollector`.
        weight_updater: a :class:`~tdrl.collectors.WeightUpdaterBase` (or a callable
            returning one) that ``update_policy_weights_`` delegates to.
        auto_register_policy_transforms: given to each worker's collector: ``True``
            appends the ``InitTracker`` / ``TensorDictPrimer`` the policy needs to the
            env each worker builds (see :class:`~tdrl.collectors.SyncDataCollector`).
        compact_obs: given to each worker's collector: the observation and state
            entries are left out of ``"next"`` (see :class:`~tdrl.collectors.SyncDataCollector`).

    Raises:
        ValueError: ``frames_per_batch`` is not a multiple of ``num_workers``, the
            policy has uninitialized (lazy) parameters, or ``trajs_per_batch`` /
            ``traj_format`` is invalid (or combined with ``split_trajs``).
        RuntimeError: a worker raised (its traceback is in the message) or died.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> collector = MultiSyncDataCollector(CountingEnv, None, num_workers=2, frames_per_batch=6,
        ...                                    total_frames=6, cat_results=-1)
        >>> next(iter(collector)).batch_size
        torch.Size([6])
        >>> collector.shutdown()
    """

    _sync = True

    def __init__(self, *args: Any, cat_results: str | int | None = None, **kwargs: Any) -> None:
        if cat_results is not None and cat_results != "stack" and not isinstance(cat_results, int):
            raise ValueError(f"MultiSyncDataCollector: cat_results must be 'stack' or an int dim, got {cat_results!r}.")
        self.cat_results = "stack" if cat_results is None else cat_results
        super().__init__(*args, **kwargs)

    @staticmethod
    def _per_worker_frames(frames_per_batch: int, n: int) -> int:
        if frames_per_batch % n:
            raise ValueError(
                f"MultiSyncDataCollector: frames_per_batch={frames_per_batch} must be a multiple of the number of "
                f"workers ({n}): each worker collects frames_per_batch / num_workers frames. Use "
                f"{frames_per_batch - frames_per_batch % n or n} or {frames_per_batch - frames_per_batch % n + n}."
            )
        return frames_per_batch // n

    def _collect(self) -> tuple[TensorDictBase, int | None]:
        workers = self._workers
        workers.check()
        if 0 <= self.total_frames <= self._frames:
            raise StopIteration
        n = self.num_workers
        # a request interrupted earlier (Ctrl-C, a timeout) is resumed, not asked again
        seqs = [workers.pending(i, "collect") for i in range(n)]
        if self.update_at_each_batch and all(seq is None for seq in seqs):
            self.update_policy_weights_()
        requests = [(i, self._request(i) if seq is None else seq) for i, seq in enumerate(seqs)]
        payloads = self._results(requests)
        # VOID: a request that never went out, or a reply lost to an interrupt: ask again
        while any(p is VOID for p in payloads):
            for k, (i, seq) in enumerate(requests):
                if payloads[k] is VOID:
                    workers.take(i, seq)
                    requests[k] = (i, self._request(i))
            payloads = self._results(requests)
        parts = [self._buffer(i, payload) for i, payload in enumerate(payloads)]
        # torch.stack and torch.cat hand TensorDicts to tensordict (__torch_function__); both copy
        if self.cat_results == "stack":
            batch = cast(TensorDictBase, torch.stack(cast("list[torch.Tensor]", parts), 0))
            self._unique_ids(batch, torch.arange(n).reshape(n, *([1] * (batch.ndim - 1))))
        else:
            parts = [p.clone() for p in parts]
            for i, p in enumerate(parts):
                self._unique_ids(p, i)
            dim = cast(int, self.cat_results)  # "stack" or an int, checked in __init__
            batch = cast(TensorDictBase, torch.cat(cast("list[torch.Tensor]", parts), dim))
        for i, seq in requests:  # stack and cat copied the shared buffers: the workers may overwrite them
            workers.take(i, seq)
        self._frames += batch.numel()  # the frames collected (split_trajs pads them, a postproc may change them)
        self._iter += 1
        return batch, None


class MultiaSyncDataCollector(MultiCollector):
    """Hand out each worker's batch as soon as it is ready; the worker goes on collecting meanwhile.

    Takes :class:`MultiSyncDataCollector`'s arguments (except ``cat_results``); each batch
    holds ``frames_per_batch`` frames from a single worker (with ``trajs_per_batch``, that
    many whole episodes, of any workers, assembled as the workers' batches come in).

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> collector = MultiaSyncDataCollector([CountingEnv, CountingEnv], None, frames_per_batch=4, total_frames=8)
        >>> sorted(batch.numel() for batch in collector)
        [4, 4]
        >>> collector.shutdown()
        >>> from functools import partial
        >>> episodes = MultiaSyncDataCollector([partial(CountingEnv, max_steps=3)] * 2, None, frames_per_batch=2,
        ...                                    total_frames=40, trajs_per_batch=2, traj_format="cat")
        >>> batch = next(iter(episodes))
        >>> batch["next", "observation"].squeeze(-1).tolist(), batch["next", "done"].squeeze(-1).tolist()
        ([1.0, 2.0, 3.0, 1.0, 2.0, 3.0], [False, False, True, False, False, True])
        >>> episodes.shutdown()
    """

    _sync = False

    @staticmethod
    def _per_worker_frames(frames_per_batch: int, n: int) -> int:
        return frames_per_batch

    def _collect(self) -> tuple[TensorDictBase, int | None]:
        workers = self._workers
        workers.check()
        if 0 <= self.total_frames <= self._frames:
            raise StopIteration
        if self.update_at_each_batch:
            self.update_policy_weights_()
        inflight: dict[int, int] = {}  # worker -> its collect request (kept from an interrupted next())
        for i in range(self.num_workers):
            seq = workers.pending(i, "collect")
            if seq is not None:
                inflight[i] = seq
        for i in range(self.num_workers):
            if i not in inflight and self._wanted(len(inflight)):
                inflight[i] = self._request(i)
        i = workers.wait_any(inflight)  # a worker that misses its deadline raises TimeoutError
        payload = self._results([(i, inflight[i])])[0]
        while payload is VOID:  # a request that never went out, or a reply lost to an interrupt: ask again
            workers.take(i, inflight[i])
            inflight[i] = self._request(i)
            payload = self._results([(i, inflight[i])])[0]
        batch = self._buffer(i, payload).clone()
        self._unique_ids(batch, i)
        workers.take(i, inflight[i])
        self._frames += self.frames_per_batch
        self._iter += 1
        if self._wanted(len(inflight) - 1):  # start the next batch while the caller works on this one
            self._request(i)
        return batch, i

    def _wanted(self, busy: int) -> bool:
        """Whether one more batch is needed, counting the ``busy`` ones in flight."""
        if self.total_frames < 0:
            return True
        return self._frames + busy * self.frames_per_batch < self.total_frames


MultiSyncCollector = MultiSyncDataCollector
"""TorchRL's current name for :class:`MultiSyncDataCollector`."""
MultiAsyncCollector = MultiaSyncDataCollector
"""TorchRL's current name for :class:`MultiaSyncDataCollector`."""
