"""``gc_paused`` counts pauses across threads: the collector is back on only when the last one ends."""

from __future__ import annotations

import gc
import multiprocessing as mp
import sys
import threading

import pytest

from tdrl._gc import gc_paused

_WAIT = 10.0  # seconds: every wait is bounded (a missed signal fails the test instead of hanging it)


def _pause_until(entered: threading.Event, leave: threading.Event, seen: list) -> None:
    with gc_paused():
        entered.set()
        assert leave.wait(_WAIT)
        seen.append(gc.isenabled())  # what this thread sees just before its pause ends


def _in_thread(entered: threading.Event, leave: threading.Event, seen: list) -> threading.Thread:
    thread = threading.Thread(target=_pause_until, args=(entered, leave, seen), daemon=True)
    thread.start()
    assert entered.wait(_WAIT)
    return thread


def test_the_first_pause_ending_leaves_the_collector_off_for_the_other_thread(gc_enabled):
    # thread A pauses first, thread B second; A ends while B is still recording its batch
    a_in, a_out, b_in, b_out = (threading.Event() for _ in range(4))
    a_seen: list = []
    b_seen: list = []
    a = _in_thread(a_in, a_out, a_seen)
    b = _in_thread(b_in, b_out, b_seen)
    a_out.set()
    a.join(_WAIT)
    assert not a.is_alive()
    assert not gc.isenabled(), "thread A's pause ended and turned the collector on while B records"
    b_out.set()
    b.join(_WAIT)
    assert not b.is_alive()
    assert b_seen == [False]
    assert gc.isenabled()  # the last pause restores what the first saw


def test_pauses_ending_in_the_order_they_began_restore_the_collector(gc_enabled):
    a_in, a_out, b_in, b_out = (threading.Event() for _ in range(4))
    seen: list = []
    a = _in_thread(a_in, a_out, seen)
    b = _in_thread(b_in, b_out, seen)
    b_out.set()
    b.join(_WAIT)
    assert not gc.isenabled()
    a_out.set()
    a.join(_WAIT)
    assert seen == [False, False]
    assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off_across_threads(gc_enabled):
    gc.disable()
    a_in, a_out, b_in, b_out = (threading.Event() for _ in range(4))
    seen: list = []
    a = _in_thread(a_in, a_out, seen)
    b = _in_thread(b_in, b_out, seen)
    a_out.set()
    b_out.set()
    a.join(_WAIT)
    b.join(_WAIT)
    assert not gc.isenabled()


def test_an_error_inside_ends_the_pause(gc_enabled):
    with pytest.raises(RuntimeError, match="boom"), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def _report_gc(conn) -> None:
    conn.send(gc.isenabled())
    conn.close()


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_process_forked_during_a_pause_runs_with_the_collector_on(gc_enabled):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    with gc_paused():
        proc = ctx.Process(target=_report_gc, args=(child,))
        proc.start()
        assert parent.poll(_WAIT)
        in_child = parent.recv()
    proc.join(_WAIT)
    assert in_child is True
    assert gc.isenabled()


def test_the_collectors_and_rollouts_use_the_same_pause():
    from tdrl.envs import _stepping

    assert _stepping.gc_paused is gc_paused
