"""Batched envs: N copies of an env stepped as one env of batch size ``[N, *env.batch_size]``.

- :class:`SerialEnv` steps its copies one after the other in this process.
- :class:`ParallelEnv` runs each copy in a worker process. Actions and results travel
  through shared-memory tensors allocated once; a step costs a shared-memory word per
  worker and one wake-up for all (on Linux; a small socket message per worker
  elsewhere). A worker that raises makes the parent raise with the worker's
  traceback; a worker that dies or hangs (past ``timeout``) raises too; ``close()``
  (and garbage collection, and interpreter exit) stops every worker.

Both seed worker ``i`` with the seed that worker ``i - 1`` hands on (``seed + i`` for
tdrl's envs), so the same seed gives the same data from either class. Both support
partial resets through ``"_reset"`` (shape ``[N, *env.batch_size, 1]``), and their
``step_and_maybe_reset`` resets the finished copies in the same pass as the step.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> env = SerialEnv(2, lambda: CountingEnv(max_steps=3))
    >>> env.batch_size
    torch.Size([2])
    >>> env.rollout(4, break_when_any_done=False)["next", "observation"].squeeze(-1)
    tensor([[1., 2., 3., 1.],
            [1., 2., 3., 1.]])

``ParallelEnv(2, lambda: CountingEnv(max_steps=3))`` takes the same arguments and gives
the same data, from worker processes (see its docstring).
"""

from __future__ import annotations

from tdrl.envs._batched_base import EnvFactory as EnvFactory  # (the type was importable from here)
from tdrl.envs._parallel import ParallelEnv
from tdrl.envs._serial import SerialEnv

__all__ = ["SerialEnv", "ParallelEnv"]
