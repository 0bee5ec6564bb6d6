"""VMAS's spaces and agents as tdrl sees them: per-agent specs, a group's stacked spec, the default grouping.

Helpers of :class:`~tdrl.envs.libs.vmas.VmasWrapper`; import the env from :mod:`tdrl.envs.libs.vmas`.
"""

from __future__ import annotations

from typing import Any

import torch

from tdrl.envs.libs._gym_convert import _torch_dtype
from tdrl.specs import (
    Bounded,
    Categorical,
    Composite,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    TensorSpec,
    Unbounded,
)

__all__: list[str] = []


def _space_to_spec(space: Any, categorical: bool, device: torch.device) -> TensorSpec | Composite:
    """One agent's gym(nasium) space from VMAS as an unbatched tdrl spec."""
    kind = type(space).__name__
    if kind == "Box":
        dtype = _torch_dtype(space.dtype)
        shape = tuple(space.shape) or (1,)
        low = torch.as_tensor(space.low, dtype=dtype).reshape(shape)
        high = torch.as_tensor(space.high, dtype=dtype).reshape(shape)
        if torch.isinf(low).all() and torch.isinf(high).all():
            return Unbounded(shape=shape, device=device, dtype=dtype)
        return Bounded(low, high, shape=shape, device=device, dtype=dtype)
    if kind == "Discrete":
        if categorical:
            return Categorical(int(space.n), shape=(), device=device, dtype=_torch_dtype(space.dtype))
        return OneHot(int(space.n), shape=(int(space.n),), device=device, dtype=torch.int64)
    if kind == "MultiDiscrete":
        nvec = [int(n) for n in space.nvec]
        if categorical:
            return MultiCategorical(nvec, device=device, dtype=_torch_dtype(space.dtype))
        return MultiOneHot(nvec, device=device, dtype=torch.int64)
    if kind == "Dict":
        return Composite(
            {key: _space_to_spec(value, categorical, device) for key, value in space.spaces.items()}, device=device
        )
    raise TypeError(f"VmasWrapper: VMAS space {kind} is not supported (supported: Box, Discrete, MultiDiscrete, Dict).")


def _describe(spec: TensorSpec | Composite) -> tuple:
    """What must agree for two agents' specs to stack: type, shape, dtype and bounds / sizes."""
    if isinstance(spec, Composite):
        return tuple((key, _describe(spec[key])) for key in sorted(spec.keys()))
    extra: Any = None
    if isinstance(spec, Bounded):
        extra = (tuple(spec.space.low.flatten().tolist()), tuple(spec.space.high.flatten().tolist()))
    elif isinstance(spec, (Categorical, OneHot)):
        extra = spec.n
    elif isinstance(spec, (MultiCategorical, MultiOneHot)):
        extra = tuple(int(n) for n in spec.nvec)
    return (type(spec).__name__, tuple(spec.shape), spec.dtype, extra)


def _stack_specs(specs: list, batch: torch.Size) -> TensorSpec | Composite:
    """The specs of a group's agents (all alike) as one spec of shape ``[*batch, n_agents, ...]``."""
    first = specs[0]
    lead = (*batch, len(specs))
    if isinstance(first, Composite):
        return Composite({key: _stack_specs([s[key] for s in specs], batch) for key in first.keys()}, shape=lead)
    if isinstance(first, Bounded):
        low = torch.stack([s.space.low for s in specs]).expand(*lead, *first.shape)
        high = torch.stack([s.space.high for s in specs]).expand(*lead, *first.shape)
        return Bounded(low.clone(), high.clone(), shape=(*lead, *first.shape), device=first.device, dtype=first.dtype)
    return first.expand(*lead, *first.shape)


def _per_env(value: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """A VMAS tensor ``[num_envs]`` as ``[num_envs, 1]``; ``[num_envs, k]`` stays."""
    return value.unsqueeze(-1) if value.ndim == len(batch) else value


def _default_group_map(agent_names: list[str]) -> dict[str, list[str]]:
    """TorchRL's default VMAS grouping: ``"<name>_<int>"`` agents go to group ``"<name>"``.

    When any agent's name does not end in ``_<int>``, every agent goes to one group
    ``"agents"``; a single group ``"agent"`` is renamed ``"agents"``.

    Examples:
        >>> _default_group_map(["agent_0", "agent_1"])
        {'agents': ['agent_0', 'agent_1']}
        >>> _default_group_map(["adversary_0", "agent_0", "agent_1"])
        {'adversary': ['adversary_0'], 'agent': ['agent_0', 'agent_1']}
        >>> _default_group_map(["alice", "bob"])
        {'agents': ['alice', 'bob']}
    """
    groups: dict[str, list[str]] = {}
    for name in agent_names:
        prefix, sep, number = name.rpartition("_")
        if not sep or not prefix or not number.isdigit():
            return {"agents": list(agent_names)}
        groups.setdefault(prefix, []).append(name)
    if list(groups) == ["agent"]:
        return {"agents": groups["agent"]}
    return groups
