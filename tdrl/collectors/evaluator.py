"""Evaluator: run a policy on an evaluation env for whole episodes and report (and log) its returns.

An :class:`Evaluator` owns an evaluation env and its own copy of the policy. Each evaluation
loads a *snapshot* of weights taken when it was requested, plays ``num_trajectories`` whole
episodes under ``exploration_type`` (deterministic by default), and turns them into TorchRL's
metrics (``eval/reward``, ``eval/reward_std``, ``eval/num_episodes``,
``eval/episode_length``, ``eval/fps``, ``eval/step``), which it hands to ``on_result`` and
to a :class:`~tdrl.record.loggers.Logger`.

Where an evaluation runs (``backend``):

- ``"thread"`` (TorchRL's default): in the caller's process. :meth:`Evaluator.evaluate` runs
  in the calling thread; :meth:`Evaluator.trigger_eval` runs it in a daemon thread, whose
  exploration type stays in that thread (with tensordict >= 0.15; with an older tensordict,
  which has one exploration type per process, ``trigger_eval`` evaluates at once in the
  calling thread, with a warning).
- ``"process"``: in one worker process (tdrl's :mod:`tdrl._workers` machinery), built from
  the env factory; weights travel through shared memory. The training loop never waits for
  it: results are collected when ready, a crash in the worker is raised in the caller with
  its traceback, and the worker stops on :meth:`Evaluator.shutdown`, on garbage collection
  and at exit (Ctrl-C included).

Results are collected, logged and passed to ``on_result`` in the caller's thread (by
:meth:`Evaluator.evaluate`, :meth:`Evaluator.poll`, :meth:`Evaluator.wait` or
:meth:`Evaluator.maybe_evaluate`), so a logger needs no lock.
"""

from __future__ import annotations

import copy
import pickle
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl._workers import StartMethod
from tdrl.collectors._eval_backends import _ProcessBackend, _ThreadBackend
from tdrl.collectors._eval_runner import _is_env_factory, _Runner
from tdrl.envs.common import EnvBase
from tdrl.envs.utils import ExplorationType
from tdrl.specs import NestedKey

__all__ = ["Evaluator"]

_BACKENDS = ("thread", "process")
_BUSY_POLICIES = ("skip", "error", "queue")
_SHUT = "Evaluator was shut down (its {what} is stopped); build a new one."
_BUSY = (
    "Evaluator.trigger_eval: an evaluation is already pending and busy_policy='error'. Collect it first "
    "(poll() / wait()), check `evaluator.pending` before triggering, or use busy_policy='skip' or 'queue'."
)


def _check_count(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "None or a positive int" if allow_none else "a positive int"
        raise ValueError(f"Evaluator: {name} must be {expected}, got {value!r}.")


def _snapshot(weights: Any) -> TensorDictBase:
    """A detached CPU copy of ``weights`` (a module or a TensorDict of parameters)."""
    if isinstance(weights, nn.Module):
        return Evaluator.extract_weights(weights)
    if isinstance(weights, TensorDictBase):
        return weights.detach().clone().cpu()
    raise TypeError(
        f"Evaluator: weights must be an nn.Module or a TensorDict of parameters "
        f"(TensorDict.from_module(policy)), got {type(weights).__name__}."
    )


class Evaluator:
    """Evaluates a policy for whole episodes, now or in the background, and logs the results.

    TorchRL's ``Evaluator`` (its arguments, methods and metric names), with three additions:
    a ``logger`` that receives every result, ``every_frames`` / ``every_iters`` with
    :meth:`maybe_evaluate` to evaluate on a schedule from a training loop, and ``seed`` for
    reproducible evaluations. Each evaluation plays ``num_trajectories`` whole episodes with
    a snapshot of the weights taken when it was requested, so training may change the
    weights meanwhile. The evaluation env's ``VecNorm`` transforms are frozen (as in
    TorchRL): evaluation episodes do not move the statistics (pass an env of its own, e.g.
    with ``VecNorm.frozen_copy()``, not the training env).

    Differences from TorchRL, on purpose: ``on_result`` and the logger run in the caller's
    thread when a result is collected (TorchRL calls ``on_result`` from its own thread, and
    swallows its exceptions; here they propagate); ``backend="process"`` also accepts a
    ``policy`` (sent once, with cloudpickle) instead of a ``policy_factory``; the
    ``"ray"`` backend, ``collector_cls`` and ``weight_sync_schemes`` are not offered.

    Args:
        env: the evaluation env, or a callable returning one (required for
            ``backend="process"``, where the env is built in the worker).
        policy: the policy to evaluate (a TensorDict module or a callable on TensorDicts).
            The evaluator runs its own copy; when no weights are passed, each evaluation
            takes the current weights of this policy. Exclusive with ``policy_factory``.

    Keyword Args:
        policy_factory: ``(env) -> policy``, called once where the env is built.
        num_trajectories: whole episodes per evaluation. Default: 10.
        max_steps: truncate an episode after this many steps (``None``: run until done;
            an env that never ends then never finishes an evaluation).
        frames_per_batch: frames collected at a time (a multiple of the env's batch numel).
            Default: one step of every sub-env for a batched env, so that the episodes
            kept are the first ``num_trajectories`` to end; else ``max_steps``, at most 64
            (the steps run past the last episode needed). A larger value with a batched env
            favours the episodes of the first sub-envs.
        collector_kwargs: more keyword arguments for the internal
            :class:`~tdrl.collectors.SyncDataCollector`.
        log_prefix: the metrics' prefix. Default: ``"eval"``.
        reward_keys: the reward entry summed into an episode's return (a RewardSum's
            ``("next", "episode_reward")`` is read instead when the env has one).
        done_keys: kept for TorchRL compatibility; episodes end at the env's
            ``("next", "done")``.
        device: kept for TorchRL compatibility; the policy runs where its parameters are.
        exploration_type: the exploration mode of the evaluation. Default: DETERMINISTIC.
        metrics_fn: ``(batch) -> dict`` of extra metrics, logged as ``<prefix>/<name>``;
            ``batch`` holds the episodes, padded, ``[num_trajectories, longest]``.
        dump_video: after each evaluation, call ``dump(step=...)`` on the env's transforms
            that have it (a ``VideoRecorder``).
        on_result: called with a TensorDict of the metrics when a result is collected.
        busy_policy: what :meth:`trigger_eval` does while an evaluation is pending:
            ``"skip"`` it (returns ``False``), raise (``"error"``), or ``"queue"`` it.
        backend: ``"thread"`` (in the caller's process) or ``"process"`` (a worker process).
        init_fn: called in the worker process before the env is built (``"process"`` only).
        logger: a :class:`~tdrl.record.loggers.Logger`; every result is logged with
            ``log_metrics(..., step=<the evaluation's step>)``.
        every_frames: with :meth:`maybe_evaluate`, evaluate each time this many more frames
            were collected.
        every_iters: with :meth:`maybe_evaluate`, evaluate every this many iterations.
        seed: seed the evaluation env (and, outside the thread of ``trigger_eval`` with the
            ``"thread"`` backend, the torch RNG, in isolation from the caller's) before each
            evaluation: the same weights give the same metrics, in every backend.
        mp_start_method: the worker's start method (``"process"``; default: the platform's).

    Raises:
        ValueError: a count that is not a positive int, an unknown ``backend`` or
            ``busy_policy``, both or neither of ``policy`` and ``policy_factory``, or
            ``backend="process"`` with an env instance instead of a factory.
        TypeError: a ``logger`` without ``log_metrics``.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> def policy(td):
        ...     return td.set("action", torch.zeros(1, dtype=torch.long))
        >>> evaluator = Evaluator(CountingEnv(max_steps=4), policy, num_trajectories=2, every_iters=2)
        >>> metrics = evaluator.evaluate(step=0)
        >>> metrics["eval/reward"], metrics["eval/episode_length"], metrics["eval/num_episodes"]
        (4.0, 4.0, 2)
        >>> [evaluator.maybe_evaluate(frames=10, wait=True) is not None for _ in range(4)]
        [False, True, False, True]
        >>> evaluator.shutdown()
    """

    def __init__(
        self,
        env: EnvBase | Callable[[], EnvBase],
        policy: Callable | None = None,
        *,
        policy_factory: Callable[[EnvBase], Callable] | None = None,
        num_trajectories: int = 10,
        max_steps: int | None = None,
        frames_per_batch: int | None = None,
        collector_kwargs: dict | None = None,
        log_prefix: str = "eval",
        reward_keys: NestedKey = ("next", "reward"),
        done_keys: NestedKey = ("next", "done"),
        device: torch.device | str | None = None,
        exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
        metrics_fn: Callable[[TensorDictBase], dict[str, float]] | None = None,
        dump_video: bool = True,
        on_result: Callable[[TensorDictBase], None] | None = None,
        busy_policy: str = "skip",
        backend: str = "thread",
        init_fn: Callable[[], None] | None = None,
        logger: Any = None,
        every_frames: int | None = None,
        every_iters: int | None = None,
        seed: int | None = None,
        mp_start_method: StartMethod = None,
    ) -> None:
        for name, value in (
            ("max_steps", max_steps),
            ("frames_per_batch", frames_per_batch),
            ("every_frames", every_frames),
            ("every_iters", every_iters),
        ):
            _check_count(name, value)
        _check_count("num_trajectories", num_trajectories, allow_none=False)
        if backend not in _BACKENDS:
            hint = " (the Ray backend is not offered: use 'process')" if backend == "ray" else ""
            raise ValueError(f"Evaluator: backend must be one of {_BACKENDS}, got {backend!r}{hint}.")
        if busy_policy not in _BUSY_POLICIES:
            raise ValueError(f"Evaluator: busy_policy must be one of {_BUSY_POLICIES}, got {busy_policy!r}.")
        if (policy is None) == (policy_factory is None):
            raise ValueError(
                "Evaluator: pass exactly one of policy= (the policy to evaluate) and policy_factory= "
                f"((env) -> policy); got {'both' if policy is not None else 'neither'}."
            )
        if backend == "process" and not _is_env_factory(env):
            raise ValueError(
                f"Evaluator: backend='process' builds the env in a worker process, so env must be a callable "
                f"returning one (e.g. lambda: GymEnv(...)), got a {type(env).__name__} instance."
            )
        if not _is_env_factory(env) and not isinstance(env, EnvBase):
            raise TypeError(
                f"Evaluator: env must be a tdrl EnvBase or a callable returning one, got {type(env).__name__}."
            )
        if logger is not None and not callable(getattr(logger, "log_metrics", None)):
            raise TypeError(
                "Evaluator: logger must be a tdrl.record.loggers.Logger (with log_metrics), "
                f"got {type(logger).__name__}."
            )
        self.log_prefix = log_prefix
        self.logger = logger
        self.every_frames, self.every_iters = every_frames, every_iters
        self.busy_policy = busy_policy
        self.backend = backend
        self._on_result = on_result
        self._source = policy if isinstance(policy, nn.Module) else None  # whose weights a trigger snapshots
        config = {
            "num_trajectories": num_trajectories,
            "max_steps": max_steps,
            "frames_per_batch": frames_per_batch,
            "collector_kwargs": dict(collector_kwargs or {}),
            "reward_keys": reward_keys,
            "exploration_type": exploration_type,
            "metrics_fn": metrics_fn,
            "dump_video": dump_video,
            "seed": seed,
        }
        del done_keys, device  # TorchRL's; see the docstring
        own_policy = copy.deepcopy(policy) if isinstance(policy, nn.Module) else policy
        self._backend: _ThreadBackend | _ProcessBackend
        if backend == "thread":
            self._backend = _ThreadBackend(_Runner(env, own_policy, policy_factory, config))
        else:
            try:
                import cloudpickle
            except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
                cloudpickle = pickle
            payload = cloudpickle.dumps((env, own_policy, policy_factory, config, init_fn))
            self._backend = _ProcessBackend(payload, mp_start_method)
        self._finalizer = weakref.finalize(self, self._backend.close, 1.0)
        self._queued: deque[tuple[TensorDictBase | None, int]] = deque()  # busy_policy="queue", thread-free
        self._step_counter = 0
        self._frames = 0
        self._iters = 0
        self._frame_mark = 0

    # --- synchronous -----------------------------------------------------------------------
    def evaluate(self, weights: TensorDictBase | nn.Module | None = None, step: int | None = None) -> dict[str, Any]:
        """Runs one evaluation now and returns its metrics (also logged and passed to ``on_result``).

        Args:
            weights: weights to evaluate (a module, or ``TensorDict.from_module(policy)``);
                ``None``: the current weights of the ``policy`` given at construction.
            step: the step the metrics are logged at (default: an internal counter).

        Returns:
            ``{"<prefix>/reward": mean episode return, "<prefix>/reward_std",
            "<prefix>/num_episodes", "<prefix>/episode_length", "<prefix>/fps",
            "<prefix>/step", ...}``.
        """
        self._check_open()
        snapshot = self._snapshot(weights)
        return self._finish(self._backend.run(snapshot, self._next_step(step)))

    # --- asynchronous ----------------------------------------------------------------------
    def trigger_eval(self, weights: TensorDictBase | nn.Module | None = None, step: int | None = None) -> bool:
        """Starts an evaluation in the background (weights snapshotted now) and returns at once.

        Returns:
            ``True`` if it was scheduled, ``False`` if skipped (busy, ``busy_policy="skip"``).

        Raises:
            RuntimeError: an evaluation is pending and ``busy_policy="error"``.
        """
        self._check_open()
        if self.pending:
            if self.busy_policy == "skip":
                return False
            if self.busy_policy == "error":
                raise RuntimeError(_BUSY)
            self._queued.append((self._snapshot(weights), self._next_step(step)))
            return True
        self._backend.submit(self._snapshot(weights), self._next_step(step))
        return True

    def poll(self, timeout: float = 0) -> dict[str, Any] | None:
        """The metrics of the oldest pending evaluation if it has finished (within ``timeout`` s), else ``None``.

        Raises:
            RuntimeError: the evaluation raised (the cause and its traceback are in the
                message), or the worker process died.
        """
        self._submit_queued()
        if self._backend.outstanding == 0:
            return None
        raw = self._backend.ready(timeout)
        if raw is None:
            return None
        self._submit_queued()
        return self._finish(raw)

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Blocks until the oldest pending evaluation finishes (at most ``timeout`` s); its metrics, or ``None``."""
        return self.poll(timeout=timeout) if timeout is not None else self._wait_forever()

    def _wait_forever(self) -> dict[str, Any] | None:
        self._submit_queued()
        if self._backend.outstanding == 0:
            return None
        raw = self._backend.ready(None)
        self._submit_queued()
        return self._finish(raw) if raw is not None else None

    def _submit_queued(self) -> None:
        """Starts the next queued evaluation (busy_policy="queue") once nothing runs."""
        if self._queued and self._backend.outstanding == 0:
            self._backend.submit(*self._queued.popleft())

    @property
    def pending(self) -> bool:
        """Whether an evaluation was triggered and its result not collected yet."""
        return self._backend.outstanding > 0 or bool(self._queued)

    # --- on a schedule ---------------------------------------------------------------------
    def maybe_evaluate(
        self, weights: TensorDictBase | nn.Module | None = None, *, frames: int = 0, wait: bool = False
    ) -> dict[str, Any] | None:
        """Counts one training iteration (and ``frames`` collected frames); evaluates when one is due.

        Call it once per training iteration. An evaluation is due every ``every_iters``
        iterations and each time the frame count passes a multiple of ``every_frames``
        (several multiples passed at once make one evaluation). Its step is the frame count
        (the iteration count while no frames were counted). With ``wait=False`` it is
        triggered in the background (:meth:`trigger_eval`) and this call never waits;
        with ``wait=True`` it runs now (:meth:`evaluate`).

        Returns:
            The metrics of an evaluation that finished (collected, logged), else ``None``.

        Raises:
            ValueError: neither ``every_frames`` nor ``every_iters`` was given, or
                ``frames`` is negative.
        """
        if self.every_frames is None and self.every_iters is None:
            raise ValueError(
                "Evaluator.maybe_evaluate needs a schedule: build the Evaluator with every_frames= or every_iters=, "
                "or call evaluate() / trigger_eval() yourself."
            )
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise ValueError(f"Evaluator.maybe_evaluate: frames must be an int >= 0, got {frames!r}.")
        self._iters += 1
        self._frames += frames
        due = self.every_iters is not None and self._iters % self.every_iters == 0
        if self.every_frames is not None:
            mark = self._frames // self.every_frames
            due = due or mark > self._frame_mark
            self._frame_mark = mark
        step = self._frames if self._frames else self._iters
        if due and wait:
            return self.evaluate(weights, step=step)
        if due:
            self.trigger_eval(weights, step=step)
        return self.poll()

    # --- lifecycle -------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops the evaluation thread or process (pending evaluations are dropped); idempotent."""
        self._queued.clear()
        self._backend.close(timeout)
        self._finalizer.detach()

    def state_dict(self) -> dict[str, Any]:
        """The schedule's counters (for a checkpoint); refused while an evaluation is pending."""
        if self.pending:
            raise RuntimeError("Evaluator.state_dict: an evaluation is pending; collect it (wait()) first.")
        return {
            "step_counter": self._step_counter,
            "frames": self._frames,
            "iters": self._iters,
            "frame_mark": self._frame_mark,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the counters saved by :meth:`state_dict`."""
        missing = [k for k in ("step_counter", "frames", "iters", "frame_mark") if k not in state_dict]
        if missing:
            raise KeyError(f"Evaluator.load_state_dict: missing {missing}; keys are {sorted(state_dict)}.")
        if self.pending:
            raise RuntimeError("Evaluator.load_state_dict: an evaluation is pending; collect it (wait()) first.")
        self._step_counter = int(state_dict["step_counter"])
        self._frames = int(state_dict["frames"])
        self._iters = int(state_dict["iters"])
        self._frame_mark = int(state_dict["frame_mark"])

    @staticmethod
    def extract_weights(policy: nn.Module) -> TensorDictBase:
        """A detached CPU copy of ``policy``'s parameters and buffers, safe to hand to another thread or process."""
        return TensorDict.from_module(policy).data.clone().cpu()

    def __repr__(self) -> str:
        return f"Evaluator(backend={self.backend!r}, log_prefix={self.log_prefix!r}, pending={self.pending})"

    # --- helpers ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._backend.closed:
            raise RuntimeError(_SHUT.format(what="thread" if self.backend == "thread" else "worker process"))
        if isinstance(self._backend, _ProcessBackend):
            self._backend.pool.check()  # a worker that died: every later use says so

    def _snapshot(self, weights: Any) -> TensorDictBase | None:
        if weights is None:
            return None if self._source is None else self.extract_weights(self._source)
        return _snapshot(weights)

    def _next_step(self, step: int | None) -> int:
        if step is not None:
            return step
        self._step_counter += 1
        return self._step_counter - 1

    def _finish(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The prefixed metrics of a raw result, logged and handed to ``on_result``."""
        prefix = self.log_prefix
        step = raw["_step"]
        out = {
            f"{prefix}/{k}": raw[k]
            for k in ("reward", "reward_std", "num_episodes", "episode_length", "fps")
            if k in raw
        }
        out.update({f"{prefix}/{k[len('custom/') :]}": v for k, v in raw.items() if k.startswith("custom/")})
        if self.logger is not None:
            self.logger.log_metrics(out, step=step)
        out[f"{prefix}/step"] = step
        if self._on_result is not None:
            self._on_result(TensorDict({k: torch.as_tensor(v) for k, v in out.items()}, batch_size=[]))
        return out
