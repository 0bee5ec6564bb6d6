"""tdrl._utils: the "tdrl" logger and the timeit timers, under TorchRL's import paths."""

from __future__ import annotations

import inspect
import logging

import pytest

import tdrl
from tdrl import _utils
from tdrl._utils import logger, timeit


class _FakeClock:
    """Stands in for time.perf_counter: each reading advances by the next given step."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = _FakeClock()
    monkeypatch.setattr(_utils.time, "perf_counter", fake)
    saved = dict(timeit._REG)
    timeit._REG.clear()
    yield fake
    timeit._REG.clear()
    timeit._REG.update(saved)


def test_logger_is_the_tdrl_logging_logger_and_prints_info_to_stdout(capsys):
    assert isinstance(logger, logging.Logger)
    assert logger.name == "tdrl"
    assert tdrl.logger is logger
    logger.info("collected %d frames", 64)
    out = capsys.readouterr().out
    assert "[tdrl][INFO] collected 64 frames" in out


def test_top_level_names_load_lazily_and_unknown_names_raise():
    assert tdrl.timeit is timeit
    with pytest.raises(AttributeError, match="no attribute 'timer'"):
        tdrl.timer  # noqa: B018


def test_context_manager_decorator_and_marks_add_to_one_record(clock):
    with timeit("step"):
        clock.advance(0.5)

    @timeit("step")
    def step() -> str:
        clock.advance(1.5)
        return "done"

    assert step() == "done"
    assert step.__name__ == "step"
    timeit.mark_start("step")
    clock.advance(1.0)
    timeit.mark_end("step")
    assert timeit.count("step") == 3
    assert timeit.todict(percall=False) == {"step": pytest.approx(3.0)}
    assert timeit.todict() == {"step": pytest.approx(1.0)}
    assert timeit.todict(prefix="time") == {"time/step": pytest.approx(1.0)}


def test_started_timer_reads_elapsed_time_without_recording(clock):
    timer = timeit("loop").start()
    clock.advance(2.0)
    assert timer.elapsed() == pytest.approx(2.0)
    assert timeit.count("loop") == 0


def test_print_logs_one_sorted_line_per_record(clock, capsys):
    with timeit("b"):
        clock.advance(0.002)
    with timeit("a"):
        clock.advance(0.001)
    text = timeit.print(prefix="train")
    lines = text.splitlines()
    assert lines[0].startswith("train -- a took 1.0000 msec")
    assert lines[1].startswith("train -- b took 2.0000 msec")
    assert "total =  0.0020 sec" in lines[1]
    assert capsys.readouterr().out.count("[tdrl][INFO] train -- ") == 2


def test_printevery_prints_every_interval_and_can_erase(clock, capsys, monkeypatch):
    monkeypatch.setattr(timeit, "_printevery_count", 0)
    for _ in range(10):
        with timeit("it"):
            clock.advance(0.1)
        timeit.printevery(num_prints=2, total_count=10, erase=True)
    assert capsys.readouterr().out.count("it took") == 2
    assert timeit.count("it") == 4  # erased after the print at call 6, then 4 more


def test_erase_and_reset_zero_records_but_keep_names(clock):
    with timeit("x"):
        clock.advance(1.0)
    timeit.erase()
    assert timeit.todict() == {"x": 0.0}
    with timeit("x"):
        clock.advance(1.0)
    timeit.reset()
    assert timeit.count("x") == 0


def test_misuse_is_explained():
    with pytest.raises(RuntimeError, match=r"never started; use it in a `with` block or call \.start\(\)"):
        timeit("idle").elapsed()
    with pytest.raises(KeyError, match=r"call timeit.mark_start\('nothing'\) first"):
        timeit.mark_end("nothing")
    with pytest.raises(TypeError, match="name must be a str, got int"):
        timeit(3)  # type: ignore[arg-type]


def test_timeit_offers_torchrls_methods_and_arguments():
    torchrl_utils = pytest.importorskip("torchrl._utils")
    theirs = torchrl_utils.timeit
    for name in ["start", "elapsed", "mark_start", "mark_end", "print", "printevery", "todict", "erase", "reset"]:
        ours_params = list(inspect.signature(getattr(timeit, name)).parameters)
        their_params = list(inspect.signature(getattr(theirs, name)).parameters)
        assert ours_params == their_params, name
    assert list(inspect.signature(timeit).parameters) == list(inspect.signature(theirs).parameters)
    assert isinstance(torchrl_utils.logger, logging.Logger)
