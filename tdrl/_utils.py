"""Progress logging and code timing, under the path TorchRL programs import them from.

TorchRL programs write ``from torchrl._utils import logger, timeit`` (or
``from torchrl import logger``); with ``tdrl`` in place of ``torchrl`` they get these.

- ``logger``: the ``logging.Logger`` named ``"tdrl"``, at level INFO, printing to the current
  ``sys.stdout`` (so ``logger.info(...)`` shows progress, as TorchRL's does). It does not
  propagate to the root logger; change its level or handlers like any ``logging.Logger``.
- ``timeit``: named wall-clock timers, as a context manager, a decorator or a started
  timer, that add up in one table (``timeit.print()``, ``timeit.todict()``, ``timeit.erase()``).

The logger is configured when this module is first imported; ``import tdrl`` alone does not
import it (``tdrl.logger`` and ``tdrl.timeit`` load it on first use).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch

__all__ = ["logger", "timeit"]

_F = TypeVar("_F", bound=Callable[..., Any])


class _CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of the record (pytest, doctest and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout  # not setStream: it flushes the previous stream, which may be closed by now
        super().emit(record)


def _make_logger() -> logging.Logger:
    log = logging.getLogger("tdrl")
    if not any(isinstance(handler, _CurrentStdoutHandler) for handler in log.handlers):
        handler = _CurrentStdoutHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s][%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


logger = _make_logger()
"""tdrl's ``logging.Logger`` (name ``"tdrl"``, level INFO, to stdout), TorchRL's ``torchrl._utils.logger``."""


def _sync(enabled: bool) -> None:
    if enabled and torch.cuda.is_available():
        torch.cuda.synchronize()


class timeit:
    """A named timer: time a block, a function or a running process, and read the totals.

    Every timer with the same name adds to one record (mean time per call, total time,
    number of calls) shared by the whole program, until :meth:`erase`.

    Args:
        name: the record this timer adds to.
        sync: wait for queued CUDA work before each reading, so GPU time is counted
            rather than launch time (nothing happens without CUDA).

    Examples:
        >>> timeit.erase()
        >>> with timeit("rollout"):
        ...     _ = sum(range(1000))
        >>> @timeit("update")
        ... def update():
        ...     return 1
        >>> update() + update()
        2
        >>> totals = timeit.todict(percall=False)  # seconds per record (other records may be there)
        >>> timeit.count("rollout"), timeit.count("update"), totals["update"] >= 0.0
        (1, 2, True)
        >>> timer = timeit("loop").start()
        >>> timer.elapsed() >= 0.0
        True
        >>> logger.setLevel("WARNING")  # print() logs each line at INFO; keep this example quiet
        >>> lines = timeit.print(prefix="time").splitlines()  # one line per record
        >>> [line for line in lines if " rollout " in line]  # doctest: +ELLIPSIS
        ['time -- rollout took ... msec (total = ... sec since last reset).']
        >>> logger.setLevel("INFO")
        >>> timeit.erase(); timeit.todict()["rollout"], timeit.count("update")
        (0.0, 0)
    """

    _REG: ClassVar[dict[str, list[float]]] = {}  # name -> [mean seconds per call, total seconds, calls]
    _MARKS: ClassVar[dict[str, float]] = {}
    _printevery_count: ClassVar[int] = 0

    def __init__(self, name: str, *, sync: bool = False) -> None:
        if not isinstance(name, str):
            raise TypeError(f"timeit: the timer's name must be a str, got {type(name).__name__} ({name!r}).")
        self.name = name
        self._sync = sync
        self.t0: float | None = None

    # --- one timing ------------------------------------------------------------------------
    def __call__(self, fn: _F) -> _F:
        """Decorate ``fn`` so that each call is timed under this timer's name."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with timeit(self.name, sync=self._sync):
                return fn(*args, **kwargs)

        return timed  # type: ignore[return-value]

    def start(self) -> timeit:
        """Start timing now (for a loop where a ``with`` block does not fit); returns the timer."""
        _sync(self._sync)
        self.t0 = time.perf_counter()
        return self

    def __enter__(self) -> timeit:
        return self.start()

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (or since the ``with`` block began).

        Raises:
            RuntimeError: when the timer was never started.
        """
        if self.t0 is None:
            raise RuntimeError(
                f"timeit({self.name!r}).elapsed(): the timer was never started; "
                f"use it in a `with` block or call .start() first."
            )
        _sync(self._sync)
        return time.perf_counter() - self.t0

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self._record(self.name, self.elapsed())

    @classmethod
    def _record(cls, name: str, seconds: float) -> None:
        record = cls._REG.setdefault(name, [0.0, 0.0, 0])
        record[1] += seconds
        record[2] += 1
        record[0] = record[1] / record[2]

    @classmethod
    def mark_start(cls, name: str) -> None:
        """Start a named timing here, to be ended by :meth:`mark_end` elsewhere."""
        cls._MARKS[name] = time.perf_counter()

    @classmethod
    def mark_end(cls, name: str) -> None:
        """End the timing started by :meth:`mark_start` and add it to ``name``'s record.

        Raises:
            KeyError: when ``mark_start(name)`` was not called before.
        """
        if name not in cls._MARKS:
            raise KeyError(
                f"timeit.mark_end({name!r}): no timing of that name was started; "
                f"call timeit.mark_start({name!r}) first (started: {sorted(cls._MARKS)})."
            )
        cls._record(name, time.perf_counter() - cls._MARKS.pop(name))

    # --- reading the records ---------------------------------------------------------------
    @classmethod
    def count(cls, name: str) -> int:
        """How many timings ``name``'s record holds (0 for an unknown name)."""
        return int(cls._REG.get(name, [0.0, 0.0, 0])[2])

    @staticmethod
    def print(prefix: str | None = None) -> str:
        """Log one line per record at INFO (mean per call in ms, total in s), sorted by name.

        Args:
            prefix: put in front of each line (``"prefix -- name took ..."``).

        Returns:
            The logged lines, joined by newlines.
        """
        lines = []
        for name in sorted(timeit._REG):
            mean, total, _ = timeit._REG[name]
            line = f"{name} took {mean * 1000:4.4f} msec (total = {total: 4.4f} sec since last reset)."
            if prefix:
                line = f"{prefix} -- {line}"
            logger.info(line)
            lines.append(line)
        return "\n".join(lines)

    @classmethod
    def printevery(cls, num_prints: int, total_count: int, *, prefix: str | None = None, erase: bool = False) -> None:
        """Call once per iteration: prints the records about ``num_prints`` times over ``total_count`` calls.

        Args:
            num_prints: how many times to print over the run.
            total_count: how many times this method will be called.
            prefix: passed to :meth:`print`.
            erase: zero the records after each print.
        """
        interval = max(1, total_count // max(1, num_prints))
        if cls._printevery_count % interval == 0:
            cls.print(prefix=prefix)
            if erase:
                cls.erase()
        cls._printevery_count += 1

    @classmethod
    def todict(cls, percall: bool = True, prefix: str | None = None) -> dict[str, float]:
        """The records as ``{name: seconds}``, ready for a logger's ``log_metrics``.

        Args:
            percall: the mean time per call (True) or the total time (False).
            prefix: keys become ``"prefix/name"``.
        """
        column = 0 if percall else 1
        return {(f"{prefix}/{name}" if prefix else name): record[column] for name, record in cls._REG.items()}

    @staticmethod
    def erase() -> None:
        """Zero every record (the names stay, with 0 calls)."""
        for name in timeit._REG:
            timeit._REG[name] = [0.0, 0.0, 0]

    @classmethod
    def reset(cls) -> None:
        """The same as :meth:`erase`."""
        cls.erase()
