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
(``id * num_workers + worker``). A worker that raises makes the parent raise with its
traceback; ``shutdown()`` (and garbage collection, and interpreter exit) stops them.

Usage (see the classes' examples)::

    collector = MultiSyncDataCollector([make_env] * 4, policy, frames_per_batch=4000, total_frames=1_000_000)
    for batch in collector:          # shape [4, 1000]
        train(batch)
        collector.update_policy_weights_()
    collector.shutdown()
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import multiprocessing as mp
from torch import nn

from tdrl.collectors.sync import DataCollectorBase, SyncDataCollector
from tdrl.collectors.utils import split_trajectories
from tdrl.envs.batched import _SPAWN_HINT, _STARTUP_TIMEOUT, StartMethod, _gather, _send, _shutdown
from tdrl.envs.common import EnvBase
from tdrl.envs.utils import ExplorationType

__all__ = ["MultiSyncDataCollector", "MultiaSyncDataCollector", "MultiSyncCollector", "MultiAsyncCollector"]

_TRAJ = ("collector", "traj_ids")


def _collector_worker(
    idx: int, conn: Connection, inherited: Connection | None, payload: bytes, parent_pid: int
) -> None:
    """A collector worker: build a SyncDataCollector, then serve "collect" requests until "close"."""
    if inherited is not None:
        inherited.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        spec = pickle.loads(payload)
        collector = SyncDataCollector(spec.pop("create_env_fn"), spec.pop("policy"), **spec)
        conn.send(("ok", None))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    batches = iter(collector)
    shared: TensorDictBase | None = None
    weights: dict | None = None
    while True:
        if not conn.poll(1.0):
            if os.getppid() != parent_pid:
                break
            continue
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            break
        if cmd == "close":
            try:
                collector.shutdown()
            finally:
                conn.send(("ok", None))
            break
        try:
            if cmd == "collect":
                if arg and weights is not None and isinstance(collector._policy, nn.Module):
                    collector._policy.load_state_dict(weights)  # the parent pushed new weights
                batch = next(batches)
                if shared is None:
                    shared = batch.clone().share_memory_()
                    conn.send(("ok", shared))
                    continue
                shared.update_(batch)
                result: Any = None
            elif cmd == "weights":
                if arg is not None:
                    weights = arg
                if weights is not None and isinstance(collector._policy, nn.Module):
                    collector._policy.load_state_dict(weights)
                result = None
            elif cmd == "seed":
                result = collector.set_seed(arg)
            else:
                raise ValueError(f"collector worker: unknown command {cmd!r}")
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class _MultiCollectorBase(DataCollectorBase):
    """Worker processes, weights and bookkeeping shared by the two multi-process collectors."""

    _per_worker_frames: Callable[[int, int], int]

    def __init__(
        self,
        create_env_fn: Sequence[Callable[..., EnvBase]] | Callable[..., EnvBase],
        policy: Any = None,
        *,
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
    ) -> None:
        cls = type(self).__name__
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
        self.update_at_each_batch = update_at_each_batch
        self.progress_bar = progress_bar
        self.policy = policy
        self.timeout = timeout
        self._frames = 0
        self._iter = 0
        self._iterator = None
        worker_frames = self._per_worker_frames(frames_per_batch, n)
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
            cloudpickle = pickle
        ctx = mp.get_context(mp_start_method)
        fork = ctx.get_start_method() == "fork"
        procs: list = []
        conns: list = []
        try:
            for i, (fn, kw) in enumerate(zip(fns, kwargs_list)):
                spec = {
                    "create_env_fn": fn,
                    "policy": policy,
                    "create_env_kwargs": kw,
                    "frames_per_batch": worker_frames,
                    "total_frames": -1,
                    "device": device,
                    "storing_device": storing_device,
                    "policy_device": policy_device,
                    "env_device": env_device,
                    "max_frames_per_traj": max_frames_per_traj,
                    "init_random_frames": (init_random_frames or 0) // n,
                    "reset_at_each_iter": reset_at_each_iter,
                    "exploration_type": exploration_type,
                    "reset_when_done": reset_when_done,
                }
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_collector_worker,
                    args=(i, child_end, parent_end if fork else None, cloudpickle.dumps(spec), os.getpid()),
                    daemon=True,
                    name=f"tdrl-{cls}-worker-{i}",
                )
                proc.start()
                child_end.close()
                procs.append(proc)
                conns.append(parent_end)
            self._procs, self._conns = procs, conns
            self._finalizer = weakref.finalize(self, _shutdown, procs, conns)
            self._closed = False
            try:
                _gather(procs, conns, range(n), max(timeout, _STARTUP_TIMEOUT), "starting", cls)
            except RuntimeError as err:
                if ctx.get_start_method() != "fork" and "died" in str(err):
                    err.add_note(_SPAWN_HINT)
                raise
            self._weights = None
            self._stale = [False] * n  # the worker has not loaded the latest pushed weights
            self._asked = [0] * n  # when each worker was last asked for a batch (a request count)
            if isinstance(policy, nn.Module):
                self._weights = {k: v.detach().clone().share_memory_() for k, v in policy.state_dict().items()}
                self._call(range(n), "weights", self._weights)
        except BaseException:
            _shutdown(procs, conns, grace=1.0)
            raise
        self._shared: list[TensorDictBase | None] = [None] * n

    # --- messaging ------------------------------------------------------------------------
    def _call(self, workers: Sequence[int], cmd: str, arg: Any = None) -> list:
        self._send(workers, cmd, arg)
        return _gather(self._procs, self._conns, workers, self.timeout, cmd, type(self).__name__)

    def _send(self, workers: Sequence[int], cmd: str, arg: Any = None) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is shut down; build a new one.")
        _send(self._procs, self._conns, workers, cmd, arg, type(self).__name__)

    def _take(self, i: int, payload: Any) -> TensorDictBase:
        """Worker ``i``'s batch as a TensorDict viewing its shared buffer (the first answer carries the buffer)."""
        if payload is not None:
            self._shared[i] = payload
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
    def update_policy_weights_(self, policy_or_weights: Any = None) -> None:
        """Push the parent policy's weights (or the given ``state_dict`` / module) to every worker.

        The weights are copied into shared memory now; each worker loads them before its
        next batch (a worker busy collecting finishes its current batch first).
        """
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

    def _collect(self, workers: Sequence[int]) -> None:
        """Ask ``workers`` for a batch, telling those with stale weights to load the pushed ones first."""
        for i in workers:
            self._send([i], "collect", self._stale[i])
            self._stale[i] = False
            self._asked[i] = max(self._asked) + 1

    def set_seed(self, seed: int, static_seed: bool = False) -> int | None:
        """Seed worker ``i``'s env with the seed worker ``i - 1`` hands on; returns the next one."""
        for i in range(self.num_workers):
            seed = self._call([i], "seed", seed)[0]
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
            self.update_policy_weights_()

    def shutdown(self) -> None:
        """Stop the workers (idempotent; also run on garbage collection and at exit)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._finalizer()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass


class MultiSyncDataCollector(_MultiCollectorBase):
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

    Raises:
        ValueError: ``frames_per_batch`` is not a multiple of ``num_workers``, or the
            policy has uninitialized (lazy) parameters.
        RuntimeError: a worker raised (its traceback is in the message) or died.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> collector = MultiSyncDataCollector(CountingEnv, None, num_workers=2, frames_per_batch=6,
        ...                                    total_frames=6, cat_results=-1)
        >>> next(iter(collector)).batch_size
        torch.Size([6])
        >>> collector.shutdown()
    """

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

    def __iter__(self) -> Iterator[TensorDictBase]:
        bar = self._progress(self.progress_bar)
        n = self.num_workers
        try:
            while self.total_frames < 0 or self._frames < self.total_frames:
                if self.update_at_each_batch:
                    self.update_policy_weights_()
                self._collect(range(n))
                payloads = _gather(self._procs, self._conns, range(n), self.timeout, "collect", type(self).__name__)
                parts = [self._take(i, p) for i, p in enumerate(payloads)]
                # torch.stack and torch.cat hand TensorDicts to tensordict (__torch_function__)
                if self.cat_results == "stack":
                    batch = cast(TensorDictBase, torch.stack(cast("list[torch.Tensor]", parts), 0))
                    self._unique_ids(batch, torch.arange(n).reshape(n, *([1] * (batch.ndim - 1))))
                else:
                    parts = [p.clone() for p in parts]
                    for i, p in enumerate(parts):
                        self._unique_ids(p, i)
                    dim = cast(int, self.cat_results)  # "stack" or an int, checked in __init__
                    batch = cast(TensorDictBase, torch.cat(cast("list[torch.Tensor]", parts), dim))
                self._frames += batch.numel()
                self._iter += 1
                if bar is not None:
                    bar.update(batch.numel())
                yield self._finish(batch)
        finally:
            if bar is not None:
                bar.close()


class MultiaSyncDataCollector(_MultiCollectorBase):
    """Hand out each worker's batch as soon as it is ready; the worker goes on collecting meanwhile.

    Takes :class:`MultiSyncDataCollector`'s arguments (except ``cat_results``); each batch
    holds ``frames_per_batch`` frames from a single worker.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> collector = MultiaSyncDataCollector([CountingEnv, CountingEnv], None, frames_per_batch=4, total_frames=8)
        >>> sorted(batch.numel() for batch in collector)
        [4, 4]
        >>> collector.shutdown()
    """

    @staticmethod
    def _per_worker_frames(frames_per_batch: int, n: int) -> int:
        return frames_per_batch

    def __iter__(self) -> Iterator[TensorDictBase]:
        bar = self._progress(self.progress_bar)
        n = self.num_workers
        busy = getattr(self, "_busy", None)
        if busy is None:
            busy = self._busy = [False] * n
        fpb = self.frames_per_batch
        try:
            while self.total_frames < 0 or self._frames < self.total_frames:
                if self.update_at_each_batch:
                    self.update_policy_weights_()
                for i in range(n):
                    if not busy[i] and self._wanted(busy):
                        self._collect([i])
                        busy[i] = True
                i = self._wait_any([i for i in range(n) if busy[i]])
                payload = _gather(self._procs, self._conns, [i], self.timeout, "collect", type(self).__name__)[0]
                busy[i] = False
                batch = self._take(i, payload).clone()
                self._frames += batch.numel()
                self._iter += 1
                if self._wanted(busy):  # start the next batch while the caller works on this one
                    self._collect([i])
                    busy[i] = True
                self._unique_ids(batch, i)
                if bar is not None:
                    bar.update(fpb)
                yield self._finish(batch)
        finally:
            if bar is not None:
                bar.close()

    def _wanted(self, busy: list) -> bool:
        """Whether one more batch is needed, counting those in flight."""
        if self.total_frames < 0:
            return True
        return self._frames + sum(busy) * self.frames_per_batch < self.total_frames

    def _wait_any(self, workers: list[int]) -> int:
        """The first of ``workers`` with an answer (or a dead process) ready."""
        conns = {self._conns[i]: i for i in workers}
        sentinels = {self._procs[i].sentinel: i for i in workers}
        ready = wait(list(conns) + list(sentinels), timeout=self.timeout)
        if not ready:
            raise TimeoutError(
                f"MultiaSyncDataCollector: no worker delivered a batch within {self.timeout} s. "
                f"Raise timeout= for slow envs."
            )
        answered = [conns[obj] for obj in ready if obj in conns]
        if answered:  # oldest request first: a fast worker must not starve a slower one's batch
            return min(answered, key=self._asked.__getitem__)
        return sentinels[ready[0]]


MultiSyncCollector = MultiSyncDataCollector
"""TorchRL's current name for :class:`MultiSyncDataCollector`."""
MultiAsyncCollector = MultiaSyncDataCollector
"""TorchRL's current name for :class:`MultiaSyncDataCollector`."""
