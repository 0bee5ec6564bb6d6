"""ParallelEnv: N copies of an env, each stepped in its own worker process (the parent's side)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_attach, td_read, td_unchecked
from tdrl._workers import LANE_AVAILABLE, STARTUP_TIMEOUT, Lane, StartMethod, WorkerPool
from tdrl._workers.lane import TRUE
from tdrl.envs._batched_base import EnvFactory, _BatchedEnv, _check_pin_memory, _meta_mismatch, _normalize_factories
from tdrl.envs._parallel_worker import _worker_main
from tdrl.envs._serial import SerialEnv
from tdrl.envs._stepping import set_group_dims, td_from_flat
from tdrl.envs._validation import _validation
from tdrl.specs import NestedKey, TensorSpec

__all__ = ["ParallelEnv"]

_AFTER_CLOSE = "use it again (the next call starts new workers)"


class ParallelEnv(_BatchedEnv):
    """``num_workers`` copies of an env, each stepped in its own worker process.

    Inputs (actions, reset masks) and outputs live in shared-memory tensors allocated
    once. On Linux a step is a word written per worker in shared memory and one eventfd
    write that wakes them all; each worker answers with a word, and the last one to answer
    wakes the parent with an eventfd write (every worker does, off x86)
    (``tdrl/_workers/lane.py``): nothing is pickled per step. Other requests (reset,
    seeding, attributes) and steps elsewhere go over each worker's socket.

    Faults (see ``tdrl/_workers/`` for the protocol):

    - a worker that raises makes the call raise ``RuntimeError`` with the worker's
      traceback; the env stays usable (as an env whose ``step`` raised);
    - a worker that dies makes the call raise ``RuntimeError`` with its exit code at once,
      and one that does not answer within ``timeout`` raises ``TimeoutError`` naming it;
    - a call interrupted while it waits (Ctrl-C, a ``TimeoutError``) is resynchronized:
      the next call first waits, up to ``timeout``, for the replies the interrupted one was
      owed and drops them, so a result always belongs to its own request (the copies may
      have taken the interrupted step: reset for a known state);
    - after a worker died, missed two deadlines in a row, or an exception cut a message
      half-way, every call raises ``RuntimeError`` saying so: ``close()`` it, and its next
      ``reset()`` starts new workers.

    A closed env starts new workers when it is used again (``reset``, ``step``,
    ``rollout``, ``set_seed``), as TorchRL's does; the new copies are built afresh, so seed
    them again for reproducible data. :attr:`is_closed` tells whether the workers are stopped.

    ``close()``, garbage collection and interpreter exit stop the workers; a worker whose
    parent is killed exits by itself within about a second. A worker may start processes
    of its own (e.g. an env that runs a ``ParallelEnv``).

    Args:
        num_workers: how many worker processes (one env copy each).
        create_env_fn: a callable returning an env, or a list of them, one per worker.
            It is serialized with cloudpickle, so lambdas work under "spawn" too.
        create_env_kwargs: keyword arguments for ``create_env_fn`` (a dict, or one per worker).
        mp_start_method: "fork", "spawn" or "forkserver" (default: the platform's default).
        timeout: seconds to wait for a worker's answer before raising ``TimeoutError``
            (env construction gets at least 300 s).
        device: the device of the batched env (default: the copies' device).
        serial_for_single: with ``num_workers=1``, build a :class:`SerialEnv` instead (same
            batch size, no worker process); no effect with more workers. Default ``False``.
        pin_memory: accepted for TorchRL programs, which pass ``False``; ``True`` raises
            ``ValueError`` as in TorchRL 0.14.1 (append a ``PinMemoryTransform`` instead).

    Raises:
        TypeError: ``create_env_fn`` is an env instance or not callable.
        RuntimeError: a worker raised (the message holds its traceback) or died, or the env
            is closed or can no longer be trusted (the message says why).
        TimeoutError: a worker did not answer within ``timeout``.
        ValueError: the copies do not share their batch size and specs.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> env = ParallelEnv(2, CountingEnv, create_env_kwargs={"max_steps": 2})
        >>> env.set_seed(0)
        2
        >>> env.rand_step(env.reset())["next", "observation"].squeeze(-1)
        tensor([1., 1.])
        >>> env.close()
        >>> type(ParallelEnv(1, CountingEnv, serial_for_single=True)).__name__
        'SerialEnv'
    """

    def __new__(cls, *args: Any, serial_for_single: bool = False, **kwargs: Any) -> Any:
        num_workers = kwargs.get("num_workers", args[0] if args else None)
        if serial_for_single and num_workers == 1:
            # one copy needs no worker process: an in-process SerialEnv keeps the batch size
            kwargs.pop("mp_start_method", None)
            kwargs.pop("timeout", None)
            return SerialEnv(*args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        num_workers: int,
        create_env_fn: EnvFactory | Sequence[EnvFactory],
        create_env_kwargs: dict | Sequence[dict] | None = None,
        mp_start_method: StartMethod = None,
        timeout: float = 300.0,
        device: Any = None,
        serial_for_single: bool = False,
        pin_memory: bool = False,
    ) -> None:
        _check_pin_memory("ParallelEnv", pin_memory)
        factories = _normalize_factories("ParallelEnv", num_workers, create_env_fn, create_env_kwargs)
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
            cloudpickle = pickle
        payloads = [cloudpickle.dumps(factory) for factory in factories]
        workers = WorkerPool("ParallelEnv", _worker_main, payloads, mp_start_method, timeout, after=_AFTER_CLOSE)
        try:
            metas = workers.started(max(timeout, STARTUP_TIMEOUT))
            _meta_mismatch("ParallelEnv", metas)
            super().__init__(num_workers, metas[0], device if device is not None else metas[0][2].device)
            self._workers, self.timeout = workers, timeout
            self._payloads, self._start_method, self._metas = payloads, mp_start_method, metas
            self._run_actions: dict = {}
            self._run_out: dict = {}
            self._alloc_buffers()
        except BaseException:
            workers.close(grace=1.0)
            raise

    @property
    def _procs(self) -> list:
        """The worker processes (for tests and diagnostics)."""
        return self._workers.procs

    def _alloc_buffers(self) -> None:
        b = self.batch_size
        full_in = self.full_action_spec.clone().update(self.full_state_spec.clone())
        # the key lists hold leaf keys, whose specs are leaves
        inp = {k: cast(TensorSpec, full_in[k]).zero() for k in self._in_keys}
        inp["_reset"] = torch.zeros((*b, 1), dtype=torch.bool)
        leaf: dict[NestedKey, TensorSpec] = {}
        for part in (self.full_observation_spec, self.full_reward_spec, self.full_done_spec):
            for k in part.keys(True, True):
                leaf[k] = cast(TensorSpec, part[k])
        for k in self.full_state_spec.keys(True, True):
            leaf.setdefault(k, cast(TensorSpec, self.full_state_spec[k]))
        nxt = {k: leaf[k].zero() for k in self._next_keys}
        root = {k: leaf[k].zero() for k in self._root_keys}
        for bufs in (inp, nxt, root):
            for t in bufs.values():
                t.share_memory_()
        self._in_buf, self._next_buf, self._root_buf = inp, nxt, root
        self._in_pairs = [(k, inp[k]) for k in self._in_keys]
        # with string keys only (no nested groups), a step builds its results from plain dicts
        self._flat = not self._groups and all(type(k) is str for k in (*self._next_keys, *self._root_keys))
        self._reward_set = set(self.reward_keys)
        # steps go through a lane (shared counters, one wake-up for all workers) where the OS has one
        self._lane = Lane(self.num_workers, ("step", "step_reset")) if LANE_AVAILABLE else None
        self._send_buffers(self._workers)

    def _send_buffers(self, workers: WorkerPool) -> None:
        lane = self._lane
        if lane is not None:
            lane.restart()
        bufs = (self._in_buf, self._next_buf, self._root_buf)
        args = [(*bufs, None if lane is None else lane.handles(i)) for i in range(self.num_workers)]
        workers.call(range(self.num_workers), "buffers", args=args)

    # --- starting and stopping --------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """Whether the workers are stopped (by :meth:`close`); the next use starts new ones."""
        return self._workers.closed

    def start(self) -> None:
        """Start the workers again after :meth:`close` (a running env is left as it is).

        Any use of a closed env (``reset``, ``step``, ``rollout``, ``set_seed``, a sub-env
        attribute) calls this first, as TorchRL's ``ParallelEnv`` does. The new workers
        build their env copies afresh: seed them again for reproducible data.
        """
        if not self._workers.closed:
            return
        workers = WorkerPool(
            "ParallelEnv", _worker_main, self._payloads, self._start_method, self.timeout, after=_AFTER_CLOSE
        )
        try:
            metas = workers.started(max(self.timeout, STARTUP_TIMEOUT))
            for i, (ours, theirs) in enumerate(zip(self._metas, metas)):
                for what, a, b in zip(("batch_size", "input_spec", "output_spec"), ours, theirs):
                    if a != b:
                        raise ValueError(
                            f"ParallelEnv.start: the env rebuilt for worker {i} differs from the first build: its "
                            f"{what} is {b}, it was {a}. create_env_fn must build the same env every time."
                        )
            self._send_buffers(workers)
        except BaseException:
            workers.close(grace=1.0)
            raise
        self._workers = workers
        self._run_out = {}  # the new workers have not seen the rollout buffers yet
        self._is_reset = False

    # --- messaging --------------------------------------------------------------------------
    def _idle(self, start: bool = False) -> None:
        """Make sure no worker still works on an interrupted request before the shared buffers are touched.

        ``start``: a closed env starts new workers (what its env methods do; attribute
        look-ups on a closed env raise instead, so that introspection never starts processes).
        """
        workers = self._workers
        if start and workers.closed:
            self.start()
            return
        if self._lane is not None and self._lane.owed():
            workers.check()
            self._lane.drain(workers)
        if workers.owed:
            workers.drain()
        else:
            workers.check()

    def _call(self, workers: Sequence[int], cmd: str, arg: Any = None, args: Sequence[Any] | None = None) -> list:
        return self._workers.call(workers, cmd, arg, args)

    def _call_steps(self, cmd: str) -> list:
        """Every worker's answer to ``cmd`` ("step", or "step_reset": whether it reset its copy)."""
        workers = range(self.num_workers)
        lane = self._lane
        if lane is None:
            return self._call(workers, cmd)
        lane.send(workers, cmd)
        return [out == TRUE for out in lane.wait(self._workers, workers, cmd)]

    def _attr_each(self, name: str) -> list:
        self._idle()
        return self._call(range(self.num_workers), "getattr", name)

    def _call_each(self, name: str, args: tuple, kwargs: dict) -> list:
        self._idle()
        return self._call(range(self.num_workers), "call", (name, args, kwargs))

    def _write_inputs(self, tensordict: TensorDictBase) -> None:
        for key, buf in self._in_pairs:
            value = td_read(tensordict, key)
            if value is not None:
                buf.copy_(value)

    def _read(self, buf: dict) -> TensorDictBase:
        return set_group_dims(td_from_flat({k: v.clone() for k, v in buf.items()}, self.batch_size), self._groups)

    # --- EnvBase ----------------------------------------------------------------------------
    def _render_each(self, kwargs: dict) -> list:
        self._idle()
        return self._call(list(range(self.num_workers)), "render", kwargs)

    def _seed_workers(self, seed: int | None) -> int | None:
        self._idle(start=True)
        for i in range(self.num_workers):
            seed = self._call([i], "seed", seed)[0]
        return seed

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = self._reset_mask(tensordict)
        self._idle(start=True)
        if mask is None:
            workers = list(range(self.num_workers))
            self._in_buf["_reset"].fill_(True)
        else:
            workers = [i for i in range(self.num_workers) if bool(mask[i].any())]
            self._in_buf["_reset"].copy_(mask.reshape(self._in_buf["_reset"].shape))
        self._call(workers, "reset", kwargs)
        return self._read(self._root_buf)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._idle(start=True)
        self._write_inputs(tensordict)
        self._call_steps("step")
        return self._read(self._next_buf)

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step every worker and reset the finished copies in the same round trip."""
        if self._action_checks is None or not self._is_reset or _validation.actions or _validation.outputs:
            # the first step (and every step under set_validation) goes through EnvBase: it validates
            tensordict = self.step(tensordict)
            return tensordict, self._next_root(tensordict)
        self._idle(start=True)
        self._write_inputs(tensordict)
        dones = self._call_steps("step_reset")
        if self._flat:
            return tensordict, self._flat_results(tensordict, dones)
        nxt = self._read(self._next_buf)
        tensordict.set("next", nxt)
        env_root = nxt.select(*self._root_keys, strict=False)  # shares the step's tensors, as step_mdp does
        if any(dones):
            src = {}
            for key, buf in self._root_buf.items():
                value = env_root.get(key, None)
                value = buf.clone() if value is None else value.clone()
                for i, done in enumerate(dones):
                    if done:
                        value[i] = buf[i]  # the worker wrote its reset root there
                src[key] = value
            env_root = set_group_dims(td_from_flat(src, self.batch_size), self._groups)
        return tensordict, self._root_from(tensordict, nxt, env_root)

    def _flat_results(self, tensordict: TensorDictBase, dones: list[bool]) -> TensorDictBase:
        """``step_and_maybe_reset``'s results where every key is a string: "next" set, the next root returned.

        The same entries as the general path (``_root_from``), built from dicts: no
        ``select``, no checked ``set``.
        """
        batch = self.batch_size
        src = {k: v.clone() for k, v in self._next_buf.items()}
        td_attach(tensordict, "next", td_unchecked(src, batch))
        root: dict[NestedKey, Any] = {k: src[k] for k in self._root_keys if k in src}  # shares the step's tensors
        if any(dones):
            for key, buf in self._root_buf.items():
                value = root.get(key)
                value = buf.clone() if value is None else value.clone()
                for i, done in enumerate(dones):
                    if done:
                        value[i] = buf[i]  # the worker wrote its reset root there
                root[key] = value
        reward = self._reward_set
        for key, value in src.items():
            if key not in root and key not in reward:
                root[key] = value
        for key, value in tensordict.items():
            if key not in root and key != "next" and key not in self._action_set:
                root[key] = value
        return td_unchecked(root, batch, None)

    def _rollout_actions(self, root: TensorDictBase, actions: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        steps = actions.shape[-1]
        self._idle(start=True)
        for key, buf in self._root_buf.items():  # the workers start from the caller's root
            value = root.get(key, None)
            if value is not None:
                buf.copy_(value)
        shared = self._run_actions.get(steps)
        if shared is None:
            shared = self._run_actions[steps] = actions.clone().share_memory_()
        else:
            shared.update_(actions)
        outs, used = self._run_out.setdefault(steps, ([None] * self.num_workers, [False] * self.num_workers))
        # the shared buffers go with each request until the worker has used them
        args = [(steps, None, None) if used[i] else (steps, shared, outs[i]) for i in range(self.num_workers)]
        payloads = self._call(range(self.num_workers), "run", args=args)
        for i, payload in enumerate(payloads):
            used[i] = payload is None  # None: it wrote into outs[i]; else its output, by value
            if payload is not None:
                outs[i] = payload.share_memory_()  # (a copy of the worker's: ours to share)
        data = cast(TensorDictBase, torch.stack(outs, 0))  # TensorDicts, stacked by tensordict
        return data, self._carry(root, self._read(self._root_buf))

    def close(self) -> None:
        """Stop the workers (idempotent; a later use starts new ones). Called on garbage collection and at exit too."""
        super().close()
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.close()
