"""The worker side of the multi-process collectors (:mod:`tdrl.collectors.multi`).

Each worker process builds a :class:`~tdrl.collectors.SyncDataCollector` from the payload the
parent pickled, then serves the parent's requests (``tdrl/_workers/``): ``"collect"`` writes the
next batch into the shared-memory buffer the parent made from the first one, ``"weights"``
loads pushed weights, ``"seed"`` seeds the worker's env.
"""

from __future__ import annotations

import pickle
import socket
from typing import Any

from tensordict import TensorDictBase
from torch import nn

from tdrl._workers import report_start, serve, setup_worker
from tdrl.collectors.sync import SyncDataCollector
from tdrl.envs._validation import _validation

__all__: list[str] = []


def _collector_worker(
    idx: int, sock: socket.socket, inherited: socket.socket | None, payload: bytes, parent_pid: int
) -> None:
    """A collector worker: build a SyncDataCollector, then serve requests until "close"."""
    setup_worker(inherited)
    collector = report_start(sock, idx, lambda: _build_collector(payload), lambda _: None)
    if collector is None:
        return
    try:
        serve(sock, parent_pid, _CollectorWorker(collector).handle)
    finally:
        collector.shutdown()


def _build_collector(payload: bytes) -> SyncDataCollector:
    spec = pickle.loads(payload)
    return SyncDataCollector(spec.pop("create_env_fn"), spec.pop("policy"), **spec)


class _CollectorWorker:
    """The worker's side: collect into a shared-memory batch, load pushed weights, seed."""

    def __init__(self, collector: SyncDataCollector) -> None:
        self.collector = collector
        self.batches = iter(collector)
        self.shared: TensorDictBase | None = None
        self.weights: dict | None = None

    def handle(self, cmd: str, arg: Any) -> Any:
        if cmd == "collect":
            load_weights, buffer, checks = arg
            _validation.actions, _validation.outputs = checks  # the parent's set_validation, for this batch
            if load_weights:
                self._load()
            if buffer is not None:  # the parent's shared buffer, made from our first batch
                self.shared = buffer
            batch = next(self.batches)
            if self.shared is None:
                return batch  # by value: the parent makes the shared buffer from it
            self.shared.update_(batch)
            return None
        if cmd == "weights":
            if arg is not None:
                self.weights = arg
            self._load()
            return None
        if cmd == "seed":
            return self.collector.set_seed(arg)
        raise ValueError(f"collector worker: unknown command {cmd!r}")

    def _load(self) -> None:
        policy = self.collector._policy
        if self.weights is not None and isinstance(policy, nn.Module):
            policy.load_state_dict(self.weights)
