"""The iterators of the multi-process collectors (:mod:`tdrl.collectors.multi`): batches, or whole episodes.

Neither is a generator: a generator that raised once (a worker error, Ctrl-C) only raises
``StopIteration`` after, while these ask the collector again, which resumes or explains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from tensordict import TensorDictBase

from tdrl.collectors._episodes import EpisodeAssembler

if TYPE_CHECKING:
    from tdrl.collectors.multi import MultiCollector

__all__: list[str] = []


class _Batches(Iterator[TensorDictBase]):
    """A multi-process collector's iterator: each ``next()`` asks the collector for a batch.

    Not a generator: a generator that raised once (a worker error, Ctrl-C) only raises
    ``StopIteration`` after; this one asks again, and the collector resumes or explains.
    """

    def __init__(self, next_batch: Callable[[], TensorDictBase], bar: Any) -> None:
        self._next_batch, self._bar = next_batch, bar

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> TensorDictBase:
        try:
            batch = self._next_batch()
        except StopIteration:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            raise
        if self._bar is not None:
            self._bar.update(batch.numel())
        return batch


class _Episodes(Iterator[TensorDictBase]):
    """A multi-process collector's iterator with ``trajs_per_batch``: batches of whole episodes.

    The workers' batches are assembled here, in the parent (trajectory ids are unique
    across workers), so an episode may span several batches and a yielded batch may hold
    episodes of several workers. Like :class:`_Batches`, a ``next()`` that raised (a worker
    error, Ctrl-C) leaves the assembly as it was, and the next one carries on.
    """

    def __init__(self, collector: MultiCollector, bar: Any) -> None:
        self._collector, self._bar = collector, bar
        self._episodes = EpisodeAssembler()

    def __iter__(self) -> _Episodes:
        return self

    def __next__(self) -> TensorDictBase:
        collector, episodes = self._collector, self._episodes
        count = cast(int, collector.trajs_per_batch)  # set: this iterator is only made with it
        while (whole := episodes.emit(count, collector.traj_format)) is None:
            try:
                batch, worker = collector._collect()
            except StopIteration:
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None
                raise
            if self._bar is not None:
                self._bar.update(batch.numel())
            if collector.reset_at_each_iter:  # the worker(s) reset before this batch: their episodes never end
                episodes.drop_partial(worker, collector.num_workers)
            episodes.ingest(batch)
        return collector.postproc(whole) if collector.postproc is not None else whole
