"""tdrl._workers: the lock that VecNorm's shared statistics travel with (the exchange protocol is
tested through its users, in tests/envs/test_batched.py, tests/collectors/test_multi.py and
tests/reliability/test_worker_faults.py)."""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import pickle
import time

import pytest
import torch

from tdrl._workers import ProcessLock


def _add_one_at_a_time(lock: ProcessLock, counter: torch.Tensor, times: int) -> None:
    for _ in range(times):
        with lock:
            value = counter.item()
            time.sleep(0.001)  # a read-modify-write that loses increments unless the lock excludes
            counter.fill_(value + 1)


@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_the_lock_excludes_processes_however_they_are_started(start_method):
    lock = ProcessLock()
    counter = torch.zeros(()).share_memory_()
    ctx = mp.get_context(start_method)
    workers = [ctx.Process(target=_add_one_at_a_time, args=(lock, counter, 30)) for _ in range(2)]
    for w in workers:
        w.start()
    _add_one_at_a_time(lock, counter, 30)  # and the parent, at the same time
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert counter.item() == 90


def test_copies_in_one_process_are_the_same_lock():
    lock = ProcessLock()
    assert copy.deepcopy(lock) is lock
    assert copy.copy(lock) is lock
    assert pickle.loads(pickle.dumps(lock)) is lock
    with lock:  # and it still works after a copy came and went
        pass


def _sleeper(idx, sock, inherited, payload, parent_pid):
    from tdrl._workers import report_start, serve, setup_worker

    setup_worker(inherited)
    report_start(sock, idx, lambda: None, lambda _: None)
    serve(sock, parent_pid, lambda cmd, seconds: (time.sleep(seconds), seconds)[1])


def test_poll_running_out_of_time_leaves_the_reply_owed_and_the_pool_usable():
    from tdrl._workers import WorkerPool

    pool = WorkerPool("Sleeper", _sleeper, [None], timeout=0.2)
    try:
        seq = pool.send(0, "sleep", 0.5)
        assert not pool.poll(0, seq, 0.05)  # twice past the pool's timeout: no TimeoutError, no broken pool
        assert not pool.poll(0, seq, 0.25)
        assert pool.poll(0, seq, None)
        assert pool.results([(0, seq)]) == [0.5]
        pool.close()
        assert [p.is_alive() for p in pool.procs] == [False]
    finally:
        pool.close()


def test_per_step_messages_are_pickled_once_and_read_back_the_same():
    from tdrl._workers.frames import _HEADER, _frame, _small

    for obj in (("step_reset", None), ("ok", False), ("ok", True)):
        frame, fds = _frame(7, obj)
        assert fds == []
        size, seq = _HEADER.unpack_from(frame)
        assert seq == 7
        assert pickle.loads(frame[_HEADER.size : _HEADER.size + size]) == obj
        assert _small(obj) is _small(obj)  # the same bytes, made once
    for obj in (("ok", 1), ("ok", torch.zeros(2)), ("seed", 3), ["ok", None]):  # anything else: pickled each time
        assert _small(obj) is None


def _crasher(idx, sock, inherited, payload, parent_pid):
    import ctypes

    from tdrl._workers import report_start, serve, setup_worker

    def crash_in_native_code():
        ctypes.string_at(0)  # reads address 0: SIGSEGV in C

    setup_worker(inherited)
    if payload == "starting":
        crash_in_native_code()
    report_start(sock, idx, lambda: None, lambda _: None)
    serve(sock, parent_pid, lambda cmd, arg: crash_in_native_code())


@pytest.mark.parametrize("when", ["starting", "step"])
def test_a_native_crash_comes_back_with_the_workers_python_traceback(when):
    from tdrl._workers import WorkerPool

    pool = WorkerPool("Test", _crasher, [when], start_method="fork", timeout=30)
    paths = list(pool._crash_paths)

    def start_and_step():
        pool.started()
        pool.results([(0, pool.send(0, "step", None))])

    try:
        with pytest.raises(RuntimeError) as info:
            start_and_step()
    finally:
        pool.close()
    message = str(info.value)
    assert f"worker 0 died while {when!r} (exit code -11)" in message
    assert "Where it crashed (Python's faulthandler in the worker)" in message
    assert "Fatal Python error: Segmentation fault" in message
    assert "in crash_in_native_code" in message  # the Python frame that made the native call
    assert "Extension modules:" not in message  # (a long list after the stacks, left out)
    assert ("It was forked from a process running" in message) == (when == "starting" and pool._threads_at_start > 1)
    assert not any(os.path.exists(p) for p in paths)  # close() removes the reports


def test_a_worker_that_ends_cleanly_leaves_no_crash_report():
    from tdrl._workers import WorkerPool

    pool = WorkerPool("Test", _sleeper, [None])
    paths = list(pool._crash_paths)
    pool.started()
    assert pool.results([(0, pool.send(0, "sleep", 0.0))]) == [0.0]
    pool.close()
    assert paths
    assert not any(os.path.exists(p) for p in paths)
