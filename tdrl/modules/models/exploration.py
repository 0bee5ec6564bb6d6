"""Exploration models: gSDEModule, generalized state-dependent exploration (Raffin et al., 2021).

The module lives at TorchRL's path (``torchrl.modules.models.exploration``) and is exported
from ``tdrl.modules``.

The exploration noise is a linear function of the state, ``eps = (sigma * E) @ state``,
with a noise matrix ``E`` drawn once per episode (or when the env's ``gSDENoise``
primer resets it to zeros): consecutive actions of one episode get smoothly varying
noise instead of independent draws.

Examples:
    >>> import torch
    >>> from tdrl.envs.utils import ExplorationType, set_exploration_type
    >>> m = gSDEModule(action_dim=2, state_dim=3)
    >>> mu, state = torch.zeros(4, 2), torch.randn(4, 3)
    >>> with set_exploration_type(ExplorationType.RANDOM):
    ...     loc, scale, action, eps = m(mu, state, torch.zeros(4, 1))
    >>> eps.shape, bool((action != mu).all())
    (torch.Size([4, 2, 3]), True)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, cast

import torch
from tensordict.nn import InteractionType as ExplorationType
from tensordict.nn.probabilistic import interaction_type as exploration_type
from torch import nn

__all__ = ["gSDEModule"]


class gSDEModule(nn.Module):
    """State-dependent exploration noise added to a deterministic action ``mu``.

    ``forward(mu, state, _eps_gSDE)`` returns ``(mu, scale, action, _eps_gSDE)``: with
    exploration ``RANDOM``, ``action = mu + ((sigma * E) @ state)``; with ``MODE``, ``MEAN``
    or ``DETERMINISTIC``, ``action = mu``. ``scale`` is the standard deviation of that noise,
    ``sqrt(sum_j (sigma_ij * state_j)^2)`` (at least ``sqrt(1e-5)``). ``E`` is redrawn from
    a standard normal when ``_eps_gSDE`` is all zeros (what ``gSDENoise`` writes at reset)
    or missing in ``RANDOM`` mode; otherwise the given noise is reused. Outside any
    ``set_exploration_type`` block it explores (``RANDOM``), as tdrl's other exploration
    modules do (TorchRL raises there).

    Args:
        action_dim: the action size.
        state_dim: the state size.
        sigma_init: the initial scale; stored as the ``sigma_init`` buffer (as in TorchRL, a
            learnt sigma starts at ``softplus(0)`` whatever this value).
        scale_min: the smallest scale.
        scale_max: the largest scale.
        learn_sigma: learn ``log_sigma`` (a parameter) or keep a fixed ``sigma_init``.
        transform: a ``torch.distributions.Transform`` applied to the action (e.g. a tanh).
        device: where the parameters live.

    Raises:
        RuntimeError: when ``mu``, ``state`` and the noise have different batch shapes, or the
            exploration type is not one of the above.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.envs.utils import ExplorationType, set_exploration_type
        >>> noise = TensorDictModule(gSDEModule(2, 3), in_keys=["mu", "obs", "_eps_gSDE"],
        ...                          out_keys=["loc", "scale", "action", "_eps_gSDE"])
        >>> td = TensorDict(mu=torch.zeros(2), obs=torch.ones(3), _eps_gSDE=torch.zeros(1))
        >>> with set_exploration_type(ExplorationType.RANDOM):
        ...     first = noise(td)["action"].clone()
        ...     second = noise(td)["action"]  # the same noise matrix: the same action for the same state
        >>> bool((first == second).all())
        True
    """

    def __init__(
        self,
        action_dim: int,
        state_dim: int,
        sigma_init: float | None = None,
        scale_min: float = 0.01,
        scale_max: float = 10.0,
        learn_sigma: bool = True,
        transform: Any = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.action_dim, self.state_dim = int(action_dim), int(state_dim)
        self.scale_min, self.scale_max = scale_min, scale_max
        self.transform = transform
        self.learn_sigma = learn_sigma
        default = math.sqrt((1.0 - scale_min) / state_dim)
        if learn_sigma:
            if sigma_init is None:
                sigma_init = math.log(math.expm1(default))  # the softplus pre-image of the default scale
            self.log_sigma = nn.Parameter(torch.zeros(self.action_dim, self.state_dim, device=device))
        else:
            if sigma_init is None:
                sigma_init = default
            self.register_buffer("_sigma", torch.full((self.action_dim, self.state_dim), sigma_init, device=device))
        if sigma_init != 0.0:
            self.register_buffer("sigma_init", torch.as_tensor(sigma_init, device=device))

    @property
    def sigma(self) -> torch.Tensor:
        """The per-(action, state) noise scale, at least ``scale_min``."""
        raw = nn.functional.softplus(self.log_sigma) if self.learn_sigma else cast(torch.Tensor, self._sigma)
        return raw.clamp_min(self.scale_min)

    def forward(
        self,
        mu: torch.Tensor,
        state: torch.Tensor,
        _eps_gSDE: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sigma = self.sigma.clamp_max(self.scale_max)
        mode = exploration_type()
        if mode is None:
            mode = ExplorationType.RANDOM  # tdrl's exploration modules explore outside any block (TorchRL raises)
        batch = state.shape[:-1]
        if batch != mu.shape[:-1]:
            raise RuntimeError(
                f"gSDEModule: mu {tuple(mu.shape)} and state {tuple(state.shape)} must share their batch dims."
            )
        eps = _eps_gSDE
        if eps is not None and eps.shape[: len(batch)] != batch:
            raise RuntimeError(
                f"gSDEModule: the noise {tuple(eps.shape)} and the state {tuple(state.shape)} "
                "must share their batch dims."
            )
        fresh = eps is None or (eps.numel() == math.prod(batch) and bool((eps == 0).all()))
        if eps is None and mode != ExplorationType.RANDOM:
            eps = sigma.new_zeros(*batch, *sigma.shape)  # no exploration: the noise does not matter
        elif fresh:
            eps = torch.randn(*batch, *sigma.shape, device=sigma.device, dtype=sigma.dtype)
        assert eps is not None  # for mypy: every branch above sets it
        if mode == ExplorationType.RANDOM:
            action = mu + ((sigma * eps) @ state.unsqueeze(-1)).squeeze(-1)
        elif mode in (ExplorationType.MODE, ExplorationType.MEAN, ExplorationType.DETERMINISTIC):
            action = mu
        else:
            raise RuntimeError(
                f"gSDEModule: exploration type {mode} is not supported. Fix: run it inside "
                f"set_exploration_type(ExplorationType.RANDOM) or a deterministic type (MODE, MEAN, DETERMINISTIC)."
            )
        scale = (sigma * state.unsqueeze(-2)).pow(2).sum(-1).clamp_min(1e-5).sqrt()
        if not torch.isfinite(scale).all():
            warnings.warn("gSDEModule: the scale is not finite (inf or nan states?).", stacklevel=2)
        if self.transform is not None:
            action = self.transform(action)
        return mu, scale, action, eps
