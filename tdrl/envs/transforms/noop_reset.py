"""NoopResetEnv: start each episode after a number of random steps (the Atari "no-op starts").

At each reset the transform steps the env it is attached to (the base env plus the
transforms before it) with random actions, ``noops`` times or a random number of
times below ``noops``, and returns the state it reached as the reset's result. An
episode that ends during those steps is reset and the steps start again (at most
``10`` more tries).

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=10), NoopResetEnv(noops=3, random=False))
    >>> env.reset()["observation"]
    tensor([3.])
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform
from tdrl.envs.utils import step_mdp
from tdrl.specs import Composite

__all__ = ["NoopResetEnv"]

_MAX_TRIES = 10


class NoopResetEnv(Transform):
    """Take random steps after each reset, so that episodes start from varied states.

    Args:
        noops: how many random steps (the upper bound with ``random=True``).
        random: draw the number of steps uniformly in ``[0, noops)`` at each reset
            (from torch's global generator); with False, exactly ``noops``.

    Raises:
        ValueError: when ``noops`` < 0 (or 0 with ``random=True``), or when attached to an env of
            more than one sub-env (wrap each sub-env instead:
            ``ParallelEnv(n, lambda: TransformedEnv(make_env(), NoopResetEnv()))``).
        RuntimeError: when reset without a parent env, or when the env ends its episode
            before the steps are done 11 times in a row.

    Examples:
        >>> import torch
        >>> from tdrl.envs import StepCounter, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> _ = torch.manual_seed(0)
        >>> env = TransformedEnv(CountingEnv(max_steps=50), NoopResetEnv(noops=30))
        >>> 0 <= env.reset()["observation"].item() < 30
        True
    """

    def __init__(self, noops: int = 30, random: bool = True) -> None:
        if not isinstance(noops, int) or noops < 0 or (random and noops == 0):
            raise ValueError(
                f"NoopResetEnv: noops must be an int >= {1 if random else 0} (the number of random steps"
                f"{', an exclusive upper bound with random=True' if random else ''}), got {noops!r}."
            )
        super().__init__()
        self.noops = noops
        self.random = random

    # the random steps happen at reset, inside the env: a rollout mapped from the base env's would skip them
    time_vectorizable = False

    @property
    def base_env(self) -> Any:
        """The env the random steps are taken on (TorchRL's name for ``parent``)."""
        return self.parent

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        if output_spec.shape.numel() > 1:
            raise ValueError(
                f"NoopResetEnv takes random steps on one env at a time; the env it is attached to has batch size "
                f"{tuple(output_spec.shape)}. Fix: wrap each sub-env, e.g. "
                "ParallelEnv(n, lambda: TransformedEnv(make_env(), NoopResetEnv())), and transform the batch after."
            )
        return output_spec

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        parent = self.parent
        if parent is None:
            raise RuntimeError(
                "NoopResetEnv has no parent env to step: attach it with TransformedEnv(env, NoopResetEnv())."
            )
        if not parent._is_reset:  # a view of the chain before this transform: its base env was just reset
            parent._is_reset = True
        noops = int(torch.randint(self.noops, (1,)).item()) if self.random else self.noops
        done_keys = parent.done_keys
        reward_keys = parent.reward_keys
        td = tensordict_reset
        for _ in range(_MAX_TRIES + 1):
            ended = False
            for _ in range(noops):
                td = parent.rand_step(td)
                ended = any(bool(td.get(("next", *((key,) if isinstance(key, str) else key)))) for key in done_keys)
                td = step_mdp(td, reward_keys=reward_keys)
                if ended:
                    td = parent.reset(td)
                    break
            if not ended:
                return td
        raise RuntimeError(
            f"NoopResetEnv: the env ended its episode before {noops} random steps were taken, "
            f"{_MAX_TRIES + 1} times in a row. Fix: pass a smaller noops."
        )

    def _extra_repr(self) -> str:
        return f"noops={self.noops}, random={self.random}"

    def __repr__(self) -> str:
        return f"NoopResetEnv(noops={self.noops}, random={self.random})"
