"""gSDENoise: the env side of gSDE exploration, a primer that resets the noise matrix each episode.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import ContinuousActionMock
    >>> env = TransformedEnv(ContinuousActionMock(), gSDENoise(action_dim=1, state_dim=3))
    >>> env.reset()["_eps_gSDE"].shape
    torch.Size([1, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tdrl.envs.transforms.primer import TensorDictPrimer
from tdrl.specs import Unbounded

__all__ = ["gSDENoise"]


class gSDENoise(TensorDictPrimer):
    """Declares ``"_eps_gSDE"`` and sets it at each reset, so that ``gSDEModule`` draws a new noise matrix.

    With both ``state_dim`` and ``action_dim`` the entry is a ``[*shape, action_dim,
    state_dim]`` standard-normal draw at each reset; otherwise a ``[*shape, 1]`` zero, which
    tells ``gSDEModule`` to draw the matrix itself at its next call. Between resets the
    value the policy wrote is carried from step to step.

    Args:
        state_dim: the state size (``None``: the module draws the noise).
        action_dim: the action size (``None``: the module draws the noise).
        shape: the env's batch shape (default: that of the env it is attached to).
        **kwargs: passed to :class:`~tdrl.envs.TensorDictPrimer`.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import ContinuousActionMock
        >>> env = TransformedEnv(ContinuousActionMock(), gSDENoise())
        >>> env.reset()["_eps_gSDE"]
        tensor([0.])
    """

    def __init__(
        self,
        state_dim: int | None = None,
        action_dim: int | None = None,
        shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.state_dim = state_dim
        self.action_dim = action_dim
        both = state_dim is not None and action_dim is not None
        tail = (int(action_dim), int(state_dim)) if both else (1,)  # type: ignore[arg-type]
        if shape is None:
            kwargs.setdefault("expand_specs", True)  # the env's batch dims are prepended at attach time
        lead = tuple(shape) if shape is not None else ()
        super().__init__(primers={"_eps_gSDE": Unbounded(shape=(*lead, *tail))}, random=both, **kwargs)

    def __repr__(self) -> str:
        return f"gSDENoise(state_dim={self.state_dim}, action_dim={self.action_dim})"
