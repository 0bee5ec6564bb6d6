"""What RayCollector pushes to its actors: a policy's weights on the CPU, and the collectors that get them.

The push itself (one ``ray.put``, every actor loads that object) is
:meth:`~tdrl.collectors.distributed._pool.ActorPool.send_weights`; the actor's side is
:meth:`~tdrl.collectors.distributed._actor.CollectorWorker.load_weights`.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

__all__ = ["cpu_weights", "worker_indices"]


def cpu_weights(source: Any) -> TensorDictBase | dict | None:
    """The weights of ``source`` on the CPU, detached; None if ``source`` holds none.

    Args:
        source: a module (its parameters and buffers, as ``TensorDict.from_module``), a
            TensorDict of parameters, or a ``state_dict``.

    Examples:
        >>> weights = cpu_weights(torch.nn.Linear(2, 1))
        >>> sorted(weights.keys()), weights["weight"].requires_grad
        (['bias', 'weight'], False)
        >>> cpu_weights(print) is None
        True
    """
    if isinstance(source, nn.Module):
        return TensorDict.from_module(source).data.to("cpu")
    if isinstance(source, TensorDictBase):
        return source.data.to("cpu")
    if isinstance(source, dict):
        return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in source.items()}
    return None


def worker_indices(worker_ids: Any, n: int) -> list[int]:
    """``worker_ids`` (an int or a sequence of them) as a list of collector indices, each checked against ``n``.

    Examples:
        >>> worker_indices(1, 3), worker_indices((0, 2), 3)
        ([1], [0, 2])
    """
    ids = [worker_ids] if isinstance(worker_ids, int) else list(worker_ids)
    bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < n]
    if bad:
        raise ValueError(f"RayCollector: worker_ids {bad} are not collector indices (0 to {n - 1}).")
    return ids
