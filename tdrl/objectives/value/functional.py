"""Pure tensor kernels for returns and advantages over a time dimension.

Every estimator here reduces to one backward linear recurrence,
``x[t] = b[t] + c[t] * x[t + 1]`` with ``x[T] = 0``, solved by
:func:`discounted_cumsum`. It runs as a log-depth (Hillis-Steele) scan: ``ceil(log2 T)``
vectorized passes over the whole batch instead of ``T`` Python iterations, so the cost
of a 1000-step trajectory is a few dozen tensor ops whatever the batch size.

Conventions (shared with TorchRL's functional API, so code runs on both):

- Tensors are ``[*B, T, *F]`` with time at ``time_dim`` (default ``-2``, i.e. the
  ``[*B, T, 1]`` layout of ``("next", "reward")``). All inputs share one shape.
- ``terminated[t]``: the episode ended at step ``t``; the next state's value is not
  bootstrapped (it is worth 0).
- ``done[t] = terminated[t] | truncated[t]``: the trajectory stops at ``t``. The
  recursion is cut there, but a truncated step still bootstraps from
  ``next_state_value[t]``. Several trajectories can follow each other in one batch row.
- The last step of the time dimension is treated as a cut (bootstrap from
  ``next_state_value`` unless terminated).

Examples:
    >>> import torch
    >>> reward = torch.ones(1, 4, 1)
    >>> done = torch.tensor([False, True, False, False]).view(1, 4, 1)
    >>> zeros = torch.zeros(1, 4, 1)
    >>> adv, target = generalized_advantage_estimate(1.0, 1.0, zeros, zeros, reward, done, done)
    >>> target.flatten()
    tensor([2., 1., 2., 1.])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "discounted_cumsum",
    "reward2go",
    "generalized_advantage_estimate",
    "vec_generalized_advantage_estimate",
    "td0_return_estimate",
    "td0_advantage_estimate",
    "td1_return_estimate",
    "vec_td1_return_estimate",
    "td1_advantage_estimate",
    "vec_td1_advantage_estimate",
    "td_lambda_return_estimate",
    "vec_td_lambda_return_estimate",
    "td_lambda_advantage_estimate",
    "vec_td_lambda_advantage_estimate",
    "vtrace_advantage_estimate",
]

_SHAPE_ERR = (
    "{fn}: all inputs must share one shape [*B, T, *F] (time at time_dim={time_dim}); "
    "got {shapes}. Give reward, done and terminated the same trailing feature dim as "
    "the values (e.g. reward of shape [*B, T, 1]). For a group of agents (values [*B, T, n_agents, 1]), "
    "read the group's per-agent flags (.set_keys(done=('agents', 'done'), terminated=('agents', 'terminated'))) "
    "or expand the env-level flags over the agents: done.unsqueeze(-2).expand(*reward.shape)."
)
_TIME_DIM_ERR = (
    "{fn}: time_dim={time_dim} is out of range for a tensor of shape {shape}. For "
    "[*B, T, 1] data use time_dim=-2 (the default); for a flat [T] tensor use time_dim=-1."
)
_ROLLING_ERR = (
    "{fn}: rolling_gamma=False (one gamma per trajectory start) is not supported; "
    "tdrl ties each gamma to its own step (rolling_gamma=True, the default)."
)


def _check_shapes(fn: str, time_dim: int, **tensors: Tensor | None) -> torch.Size:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise ValueError(_SHAPE_ERR.format(fn=fn, time_dim=time_dim, shapes=shapes))
    ndim = len(first)
    if not -ndim <= time_dim < ndim:
        raise ValueError(_TIME_DIM_ERR.format(fn=fn, time_dim=time_dim, shape=first))
    return torch.Size(first)


def _not(flag: Tensor) -> Tensor:
    """``~flag`` as a bool tensor (numeric flags are read as ``flag != 0``)."""
    return ~flag if flag.dtype == torch.bool else flag == 0


def _scaled(flag: Tensor, scale: float | Tensor, like: Tensor) -> Tensor:
    """``scale * flag`` as a tensor of ``like``'s dtype (one op for a Python scale)."""
    if isinstance(scale, Tensor):
        return scale.to(like.dtype) * flag
    if like.dtype == torch.get_default_dtype() or flag.dtype.is_floating_point:
        return flag * scale
    return flag.to(like.dtype) * scale


def _scan_last_autograd(b: Tensor, c: Tensor) -> Tensor:
    """The scan of :func:`_scan_last` with out-of-place ops, so autograd can follow it."""
    T = b.shape[-1]
    x, d = b, 1
    while d < T:
        head = torch.addcmul(x[..., : T - d], c[..., : T - d], x[..., d:])
        x = torch.cat([head, x[..., T - d :]], dim=-1)
        if 2 * d < T:
            c = c[..., : T - 2 * d] * c[..., d : T - d]
        d *= 2
    return x


def _scan_last(b: Tensor, c: Tensor, out: Tensor) -> Tensor:
    """Solves ``x[t] = b[t] + c[t] * x[t+1]`` (``x[T] = 0``) along the last dim into ``out``.

    Hillis-Steele: after the pass with offset ``d``, ``x[t]`` holds the discounted sum over
    ``[t, t + 2d)`` and ``c[t]`` the product of the factors over ``[t, t + 2d)``. ``x`` and
    ``c`` live in zero-padded ``2T`` buffers, so the shifted operand ``x[t + d]`` reads 0
    past the end and each pass is two ops (one ``addcmul``, one ``mul``) with no copy.
    """
    T = b.shape[-1]
    if T == 1:
        return out.copy_(b)
    buf = b.new_zeros((4, *b.shape[:-1], 2 * T))
    x, x_next, cc, cc_next = buf.unbind(0)
    x_head, x_next_head, cc_head, cc_next_head = buf[..., :T].unbind(0)
    x_head.copy_(b)
    cc_head.copy_(c)
    d = 1
    while 2 * d < T:
        torch.addcmul(x_head, cc_head, x[..., d : d + T], out=x_next_head)
        torch.mul(cc_head, cc[..., d : d + T], out=cc_next_head)
        x, x_next, cc, cc_next = x_next, x, cc_next, cc
        x_head, x_next_head, cc_head, cc_next_head = x_next_head, x_head, cc_next_head, cc_head
        d *= 2
    return torch.addcmul(x_head, cc_head, x[..., d : d + T], out=out)


def _scan(b: Tensor, c: Tensor, time_dim: int) -> Tensor:
    """``x[t] = b[t] + c[t] * x[t+1]`` along ``time_dim``; ``b`` and ``c`` share one shape."""
    if torch.is_grad_enabled() and (b.requires_grad or c.requires_grad):
        return _scan_last_autograd(b.movedim(time_dim, -1), c.movedim(time_dim, -1)).movedim(-1, time_dim)
    out = torch.empty(b.shape, dtype=b.dtype, device=b.device)
    _scan_last(b.movedim(time_dim, -1), c.movedim(time_dim, -1), out.movedim(time_dim, -1))
    return out


def _cut_last_step(not_done: Tensor, time_dim: int) -> Tensor:
    """Clears the last time step of ``not_done``: a batch ends every trajectory."""
    not_done = not_done.clone()
    not_done.select(time_dim, -1).fill_(False)
    return not_done


def discounted_cumsum(values: Tensor, discount: float | Tensor, *, time_dim: int = -2) -> Tensor:
    """Backward discounted sum ``x[t] = values[t] + discount[t] * x[t+1]``, ``x[T] = 0``.

    Args:
        values: ``[*B, T, *F]`` tensor.
        discount: a scalar or a tensor of ``values``'s shape; a zero at ``t`` cuts the
            sum there (a trajectory boundary).
        time_dim: the time dimension of ``values``.

    Returns:
        A tensor of ``values``'s shape.

    Examples:
        >>> discounted_cumsum(torch.ones(5), 0.5, time_dim=-1)
        tensor([1.9375, 1.8750, 1.7500, 1.5000, 1.0000])
    """
    if not -values.ndim <= time_dim < values.ndim:
        raise ValueError(_TIME_DIM_ERR.format(fn="discounted_cumsum", time_dim=time_dim, shape=tuple(values.shape)))
    if not isinstance(discount, Tensor) or discount.shape != values.shape:
        discount = torch.as_tensor(discount, dtype=values.dtype, device=values.device).expand_as(values)
    return _scan(values, discount.to(values.dtype), time_dim)


def reward2go(reward: Tensor, done: Tensor, gamma: float | Tensor, *, time_dim: int = -2) -> Tensor:
    """Discounted reward-to-go within each trajectory (no bootstrapping).

    Args:
        reward: ``[*B, T, *F]`` rewards.
        done: ``[*B, T, *F]`` end-of-trajectory flags; the sum restarts after each.
        gamma: discount factor.
        time_dim: the time dimension.

    Returns:
        ``G[t] = sum_k gamma^k reward[t+k]`` up to the end of ``t``'s trajectory.

    Examples:
        >>> reward = torch.ones(6, 1)
        >>> done = torch.tensor([0, 0, 1, 0, 0, 0], dtype=torch.bool).unsqueeze(-1)
        >>> reward2go(reward, done, 1.0).flatten()
        tensor([3., 2., 1., 3., 2., 1.])
    """
    _check_shapes("reward2go", time_dim, reward=reward, done=done)
    return _scan(reward, _scaled(_not(done), gamma, reward), time_dim)


def generalized_advantage_estimate(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    time_dim: int = -2,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimate (Schulman et al., 2016).

    ``delta[t] = r[t] + gamma * (1 - terminated[t]) * V(s'[t]) - V(s[t])`` and
    ``A[t] = delta[t] + gamma * lmbda * (1 - done[t]) * A[t+1]``.

    Args:
        gamma: discount factor (scalar or a tensor of the inputs' shape).
        lmbda: GAE lambda (scalar or a tensor of the inputs' shape).
        state_value: ``V(s[t])``, shape ``[*B, T, *F]``.
        next_state_value: ``V(s'[t])`` (the value of ``("next", obs)``).
        reward: ``("next", "reward")``.
        done: ``("next", "done")``: cuts the recursion.
        terminated: ``("next", "terminated")``: stops bootstrapping. Defaults to ``done``.
        time_dim: the time dimension.

    Returns:
        ``(advantage, value_target)`` with ``value_target = advantage + state_value``.

    Examples:
        >>> v = torch.zeros(1, 3, 1)
        >>> r = torch.ones(1, 3, 1)
        >>> nd = torch.zeros(1, 3, 1, dtype=torch.bool)
        >>> adv, tgt = generalized_advantage_estimate(0.5, 1.0, v, v, r, nd, nd)
        >>> adv.flatten()
        tensor([1.7500, 1.5000, 1.0000])
    """
    if terminated is None:
        terminated = done
    _check_shapes(
        "generalized_advantage_estimate",
        time_dim,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    if isinstance(gamma, Tensor):
        bootstrap = _scaled(_not(terminated), gamma, state_value)
        delta = torch.addcmul(reward - state_value, bootstrap, next_state_value)
    else:
        delta = torch.addcmul(reward - state_value, _not(terminated), next_state_value, value=gamma)
    advantage = _scan(delta, _scaled(_not(done), gamma * lmbda, state_value), time_dim)
    return advantage, advantage + state_value


def td0_return_estimate(
    gamma: float | Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    terminated: Tensor | None = None,
    *,
    done: Tensor | None = None,
) -> Tensor:
    """One-step bootstrapped return ``r[t] + gamma * (1 - terminated[t]) * V(s'[t])``.

    Args:
        gamma: discount factor.
        next_state_value: ``V(s'[t])``.
        reward: ``("next", "reward")``.
        terminated: ``("next", "terminated")``; no bootstrap where set.
        done: accepted for compatibility; used as ``terminated`` when that is not given.

    Returns:
        The TD(0) target, shaped like ``reward``.

    Examples:
        >>> td0_return_estimate(0.9, torch.ones(2, 1), torch.ones(2, 1), torch.tensor([[False], [True]]))
        tensor([[1.9000],
                [1.0000]])
    """
    if terminated is None:
        if done is None:
            raise ValueError(
                "td0_return_estimate: pass terminated (the no-bootstrap flags, ('next', 'terminated') in a rollout)."
            )
        terminated = done
    _check_shapes("td0_return_estimate", -1, next_state_value=next_state_value, reward=reward, terminated=terminated)
    if isinstance(gamma, Tensor):
        return torch.addcmul(reward, _scaled(_not(terminated), gamma, reward), next_state_value)
    return torch.addcmul(reward, _not(terminated), next_state_value, value=gamma)


def td0_advantage_estimate(
    gamma: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
) -> Tensor:
    """TD(0) advantage: :func:`td0_return_estimate` minus ``state_value``.

    Examples:
        >>> v = torch.ones(2, 1)
        >>> td0_advantage_estimate(0.5, v, v, v, torch.zeros(2, 1, dtype=torch.bool))
        tensor([[0.5000],
                [0.5000]])
    """
    if terminated is None:
        terminated = done
    _check_shapes(
        "td0_advantage_estimate",
        -1,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    return td0_return_estimate(gamma, next_state_value, reward, terminated) - state_value


def td_lambda_return_estimate(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> Tensor:
    """TD(lambda) return, bootstrapped from ``next_state_value``.

    ``G[t] = r[t] + gamma * (1 - terminated[t]) * ((1 - lmbda) * V(s'[t]) + lmbda * G'[t+1])``
    where ``G'[t+1] = G[t+1]`` inside a trajectory and ``V(s'[t])`` at a truncation or at
    the end of the batch.

    Args:
        gamma: discount factor (scalar or per-step tensor).
        lmbda: lambda (scalar or per-step tensor).
        next_state_value: ``V(s'[t])``.
        reward: ``("next", "reward")``.
        done: ``("next", "done")``.
        terminated: ``("next", "terminated")``. Defaults to ``done``.
        rolling_gamma: only ``None``/``True`` (each gamma belongs to its step) is supported.
        time_dim: the time dimension.

    Returns:
        The lambda-return, shaped like ``reward``.

    Examples:
        >>> nv = torch.full((1, 3, 1), 10.0)
        >>> r = torch.ones(1, 3, 1)
        >>> done = torch.zeros(1, 3, 1, dtype=torch.bool)
        >>> td_lambda_return_estimate(1.0, 1.0, nv, r, done).flatten()
        tensor([13., 12., 11.])
    """
    if rolling_gamma is False:
        raise ValueError(_ROLLING_ERR.format(fn="td_lambda_return_estimate"))
    if terminated is None:
        terminated = done
    _check_shapes(
        "td_lambda_return_estimate",
        time_dim,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    # G[t] = r + g(1-term) V' + g*l*(1-done)(G[t+1] - V'): a linear recurrence in G.
    discount = _scaled(_cut_last_step(_not(done), time_dim), gamma * lmbda, reward)
    base = torch.addcmul(reward, _scaled(_not(terminated), gamma, reward), next_state_value)
    base = base - discount * next_state_value
    return _scan(base, discount, time_dim)


def td_lambda_advantage_estimate(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> Tensor:
    """TD(lambda) advantage: :func:`td_lambda_return_estimate` minus ``state_value``.

    Examples:
        >>> z = torch.zeros(1, 2, 1)
        >>> td_lambda_advantage_estimate(1.0, 0.5, z, z, torch.ones(1, 2, 1), z.bool()).flatten()
        tensor([1.5000, 1.0000])
    """
    if terminated is None:
        terminated = done
    _check_shapes(
        "td_lambda_advantage_estimate",
        time_dim,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    returns = td_lambda_return_estimate(
        gamma, lmbda, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )
    return returns - state_value


def td1_return_estimate(
    gamma: float | Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> Tensor:
    """Monte-Carlo return bootstrapped at truncations: TD(lambda) with ``lmbda=1``.

    Examples:
        >>> z = torch.zeros(1, 3, 1)
        >>> td1_return_estimate(1.0, z, torch.ones(1, 3, 1), z.bool()).flatten()
        tensor([3., 2., 1.])
    """
    return td_lambda_return_estimate(
        gamma, 1.0, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )


def td1_advantage_estimate(
    gamma: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    *,
    time_dim: int = -2,
) -> Tensor:
    """TD(1) advantage: :func:`td1_return_estimate` minus ``state_value``.

    Examples:
        >>> z = torch.zeros(1, 2, 1)
        >>> td1_advantage_estimate(1.0, z + 1, z, torch.ones(1, 2, 1), z.bool()).flatten()
        tensor([1., 0.])
    """
    return td_lambda_advantage_estimate(
        gamma, 1.0, state_value, next_state_value, reward, done, terminated, rolling_gamma, time_dim=time_dim
    )


# TorchRL exposes loop and "vec_" variants; here there is one (vectorized) kernel each.
vec_generalized_advantage_estimate = generalized_advantage_estimate
vec_td1_return_estimate = td1_return_estimate
vec_td1_advantage_estimate = td1_advantage_estimate
vec_td_lambda_return_estimate = td_lambda_return_estimate
vec_td_lambda_advantage_estimate = td_lambda_advantage_estimate


def vtrace_advantage_estimate(
    gamma: float | Tensor,
    log_pi: Tensor,
    log_mu: Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rho_thresh: float | Tensor = 1.0,
    c_thresh: float | Tensor = 1.0,
    time_dim: int = -2,
) -> tuple[Tensor, Tensor]:
    """V-trace targets and advantages for off-policy actor-critic (IMPALA, Espeholt et al., 2018).

    With the importance ratio ``rho[t] = exp(log_pi[t] - log_mu[t])`` of the learner's policy
    ``pi`` over the behaviour policy ``mu`` that acted, clipped as ``rho_bar = min(rho, rho_thresh)``
    and ``c = min(rho, c_thresh)``:
    ``delta[t] = rho_bar[t] * (r[t] + gamma * (1 - terminated[t]) * V(s'[t]) - V(s[t]))``,
    ``vs[t] - V(s[t]) = delta[t] + gamma * (1 - done[t]) * c[t] * (vs[t+1] - V(s[t+1]))``, and the
    policy-gradient advantage ``rho_bar[t] * (r[t] + gamma * (1 - terminated[t]) * vs'[t] - V(s[t]))``,
    where ``vs'[t]`` is ``vs[t+1]`` inside a trajectory and ``V(s'[t])`` where it stops (``done``,
    or the last step of the batch). On-policy (``log_pi == log_mu``) with thresholds of at least 1,
    ``vs`` is the TD(1) return.

    Args:
        gamma: discount factor (scalar or a tensor of the inputs' shape).
        log_pi: log-probability of the taken actions under the policy being trained.
        log_mu: log-probability of the taken actions under the policy that collected them.
        state_value: ``V(s[t])``, shape ``[*B, T, *F]``.
        next_state_value: ``V(s'[t])``.
        reward: ``("next", "reward")``.
        done: ``("next", "done")``: cuts the recursion.
        terminated: ``("next", "terminated")``: stops bootstrapping. Defaults to ``done``.
        rho_thresh: clip of the importance weight in the targets and advantage (``rho-bar``).
        c_thresh: clip of the importance weight in the trace (``c-bar``).
        time_dim: the time dimension.

    Returns:
        ``(advantage, value_target)``, both shaped like ``state_value``.

    Raises:
        ValueError: the inputs do not share one shape.

    Examples:
        >>> v = torch.zeros(1, 3, 1)
        >>> r = torch.ones(1, 3, 1)
        >>> nd = torch.zeros(1, 3, 1, dtype=torch.bool)
        >>> log_pi, log_mu = torch.zeros(1, 3, 1), torch.full((1, 3, 1), 0.5)  # pi is less likely: rho < 1
        >>> adv, vs = vtrace_advantage_estimate(1.0, log_pi, log_mu, v, v, r, nd, nd)
        >>> vs.flatten()
        tensor([1.1975, 0.9744, 0.6065])
    """
    if terminated is None:
        terminated = done
    _check_shapes(
        "vtrace_advantage_estimate",
        time_dim,
        log_pi=log_pi,
        log_mu=log_mu,
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    rho = (log_pi - log_mu).exp()
    rho_bar = rho.clamp_max(rho_thresh) if not isinstance(rho_thresh, Tensor) else torch.minimum(rho, rho_thresh)
    c = rho.clamp_max(c_thresh) if not isinstance(c_thresh, Tensor) else torch.minimum(rho, c_thresh)
    bootstrap = _scaled(_not(terminated), gamma, state_value)
    delta = rho_bar * (reward + bootstrap * next_state_value - state_value)
    vs = _scan(delta, _scaled(_not(done), gamma, state_value) * c, time_dim) + state_value
    # vs[t + 1] within a trajectory; the true next value where it stops (done, or the batch's last step)
    vs_next = torch.cat([vs.narrow(time_dim, 1, vs.shape[time_dim] - 1), vs.narrow(time_dim, 0, 1)], time_dim)
    cut = _cut_last_step(_not(done), time_dim)
    vs_next = torch.where(cut, vs_next, next_state_value)
    advantage = rho_bar * (reward + bootstrap * vs_next - state_value)
    return advantage, vs
