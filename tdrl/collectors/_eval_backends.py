"""Where an :class:`~tdrl.collectors.Evaluator`'s evaluations run: the thread and the process backends.

Both answer ``run`` (synchronously), ``submit`` / ``ready`` (asynchronously, results in request
order) and ``close``. The thread backend runs the evaluation in the caller's process, in a
daemon thread whose exploration type stays in that thread; the process backend runs it in one
worker process (:mod:`tdrl._workers`), built from the pickled env factory and policy.
"""

from __future__ import annotations

import inspect
import pickle
import queue
import threading
import time
import traceback
import warnings
from collections import deque
from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import set_interaction_type

from tdrl._workers import StartMethod, WorkerPool, report_start, serve, setup_worker
from tdrl.collectors._eval_runner import _Runner

__all__: list[str] = []


class _ThreadBackend:
    """Evaluations in the caller's process: synchronous in the caller, asynchronous in a daemon thread."""

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.lock = threading.Lock()  # one evaluation at a time on the runner's env
        self.requests: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.outstanding = 0
        self.thread: threading.Thread | None = None
        self.closed = False
        self.warned = False

    def run(self, weights: TensorDictBase | None, step: int) -> dict[str, Any]:
        with self.lock:
            return self.runner.run(weights, step, isolate_rng=True)

    def submit(self, weights: TensorDictBase | None, step: int) -> None:
        if not THREAD_LOCAL_EXPLORATION:
            self._run_in_caller(weights, step)
            return
        if self.thread is None:
            self.thread = threading.Thread(
                target=_thread_loop, args=(self.runner, self.lock, self.requests, self.results), daemon=True
            )
            self.thread.start()
        self.requests.put((weights, step))
        self.outstanding += 1

    def _run_in_caller(self, weights: TensorDictBase | None, step: int) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(
                "Evaluator: this tensordict cannot keep the exploration type to one thread (tensordict "
                ">= 0.15 can), so trigger_eval runs the evaluation now, in the caller's thread, instead "
                "of in the background; pass backend='process' for a background evaluation.",
                RuntimeWarning,
                stacklevel=4,
            )
        try:
            self.results.put(("ok", self.run(weights, step)))
        except Exception as err:  # raised by ready(), as the thread's would be
            self.results.put(("error", (err, traceback.format_exc())))
        self.outstanding += 1

    def ready(self, timeout: float | None) -> dict[str, Any] | None:
        try:
            status, payload = self.results.get(timeout=timeout) if timeout != 0 else self.results.get_nowait()
        except queue.Empty:
            return None
        self.outstanding -= 1
        if status == "error":
            err, text = payload
            raise RuntimeError(f"Evaluator: the evaluation thread raised:\n{text}") from err
        return payload

    def close(self, timeout: float) -> None:
        self.closed = True
        if self.thread is not None:
            self.requests.put(None)
            self.thread.join(timeout)


# The exploration type is one value for the whole process: an evaluation thread that set it would
# switch the training loop's policy to the evaluation's mode while it runs (and could leave it set).
# tensordict >= 0.15 can keep it to one thread (set_interaction_type(..., thread_local=True)); with
# an older tensordict the background evaluation runs in the caller's thread instead.
THREAD_LOCAL_EXPLORATION = "thread_local" in inspect.signature(set_interaction_type.__init__).parameters


def _thread_loop(runner: _Runner, lock: threading.Lock, requests: queue.Queue, results: queue.Queue) -> None:
    with set_interaction_type(runner.config["exploration_type"], thread_local=True):  # (see above)
        while (request := requests.get()) is not None:
            try:
                with lock:
                    weights, step = request
                    results.put(("ok", runner.run(weights, step, isolate_rng=False)))
            except BaseException as err:  # handed to the caller, which raises it
                results.put(("error", (err, traceback.format_exc())))


# --- the process backend -----------------------------------------------------------------------


def _evaluator_worker(idx: int, sock: Any, inherited: Any, payload: bytes, parent_pid: int) -> None:
    setup_worker(inherited)
    runner = report_start(sock, idx, lambda: _build_runner(payload), lambda _: None)
    if runner is None:
        return
    try:
        serve(sock, parent_pid, lambda cmd, arg: runner.run(arg[0], arg[1], isolate_rng=True))
    finally:
        runner.env.close()


def _build_runner(payload: bytes) -> _Runner:
    env_factory, policy, policy_factory, config, init_fn = pickle.loads(payload)
    if init_fn is not None:
        init_fn()
    return _Runner(env_factory, policy, policy_factory, config)


class _ProcessBackend:
    """Evaluations in one worker process; requests are answered in order."""

    def __init__(self, payload: bytes, start_method: StartMethod) -> None:
        self.pool = WorkerPool("Evaluator", _evaluator_worker, [payload], start_method, close="shutdown()")
        self.started = False
        self.seqs: deque[int] = deque()  # asynchronous requests whose result was not collected

    @property
    def outstanding(self) -> int:
        return len(self.seqs)

    def _check_started(self, timeout: float | None) -> bool:
        if not self.started:
            if not self.pool.poll(0, -1, timeout):
                return False
            self.pool.started()  # raises with the worker's traceback if it failed to build
            self.started = True
        return True

    def run(self, weights: TensorDictBase | None, step: int) -> dict[str, Any]:
        self._check_started(None)
        seq = self.pool.send(0, "evaluate", (weights, step))
        self.pool.poll(0, seq, None)
        return self.pool.results([(0, seq)])[0]

    def submit(self, weights: TensorDictBase | None, step: int) -> None:
        self.seqs.append(self.pool.send(0, "evaluate", (weights, step)))

    def ready(self, timeout: float | None) -> dict[str, Any] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._check_started(timeout):
            return None
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self.pool.poll(0, self.seqs[0], remaining):
            return None
        seq = self.seqs.popleft()
        return self.pool.results([(0, seq)])[0]

    def close(self, timeout: float) -> None:
        self.pool.close(grace=timeout, closed="shut down")

    @property
    def closed(self) -> bool:
        return self.pool.closed


# --- the evaluator -----------------------------------------------------------------------------
