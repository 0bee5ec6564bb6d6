"""PettingZoo agents as tdrl groups: the grouping, a group's stacked specs and the fields a group fills.

Helpers of :class:`~tdrl.envs.libs.pettingzoo.PettingZooWrapper`; import the env from
:mod:`tdrl.envs.libs.pettingzoo`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch

from tdrl.specs import Bounded, Composite, OneHot, TensorSpec

__all__: list[str] = []


def _default_group_map(agents: list[str], parallel: bool) -> dict[str, list[str]]:
    """TorchRL's default grouping: by ``<prefix>_<int>`` prefix in parallel envs, one group per agent in AEC envs."""
    if not parallel:
        return {agent: [agent] for agent in agents}
    groups: dict[str, list[str]] = {}
    for agent in agents:
        prefix, sep, suffix = agent.rpartition("_")
        group = prefix if sep and prefix and suffix.isdigit() else agent
        groups.setdefault(group, []).append(agent)
    return groups


def _check_group_map(group_map: Any, agents: list[str], cls: str) -> dict[str, list[str]]:
    """``group_map`` as a dict of lists, checked to hold each of ``agents`` exactly once."""
    if hasattr(group_map, "get_group_map"):
        group_map = group_map.get_group_map(agents)
    if not isinstance(group_map, Mapping):
        raise TypeError(
            f"{cls}: group_map must be a dict {{group: [agent, ...]}}, a MarlGroupMapType or None, "
            f"got {type(group_map).__name__}."
        )
    out = {str(group): list(members) for group, members in group_map.items()}
    seen: dict[str, str] = {}
    for group, members in out.items():
        if not members:
            raise ValueError(f"{cls}: group {group!r} of group_map has no agents; remove it or give it agents.")
        if group in agents and members != [group]:
            raise ValueError(
                f"{cls}: group {group!r} is named like an agent but holds {members}; a group named after an "
                f"agent may hold only that agent. Rename the group."
            )
        for agent in members:
            if agent not in agents:
                raise ValueError(f"{cls}: group_map[{group!r}] names agent {agent!r}, which the env lacks {agents}.")
            if agent in seen:
                raise ValueError(
                    f"{cls}: agent {agent!r} is in groups {seen[agent]!r} and {group!r}; put it in one group."
                )
            seen[agent] = group
    missing = [agent for agent in agents if agent not in seen]
    if missing:
        raise ValueError(f"{cls}: group_map leaves out agents {missing}; add each of them to one group.")
    return out


def _stack_leaves(specs: list[TensorSpec], describe: Callable[[list], str]) -> TensorSpec:
    """One spec with a leading agent dim for the agents' equal leaf specs (bounds may differ per agent)."""
    first, n = specs[0], len(specs)
    if all(spec == first for spec in specs[1:]):
        return first.expand(n, *first.shape)
    if all(isinstance(s, Bounded) and s.shape == first.shape and s.dtype == first.dtype for s in specs):
        bounded = cast(list[Bounded], specs)
        low = torch.stack([s.space.low for s in bounded])
        high = torch.stack([s.space.high for s in bounded])
        return Bounded(low, high, shape=(n, *first.shape), dtype=first.dtype, device=first.device)
    raise ValueError(describe(specs))


def _leaf_paths(spec: TensorSpec | Composite) -> list[tuple[str, ...]]:
    """The leaf paths of an agent's spec: ``[()]`` for a leaf, ``[(key, ...), ...]`` for a Composite."""
    if isinstance(spec, Composite):
        return [key if isinstance(key, tuple) else (key,) for key in spec.keys(True, True)]
    return [()]


def _at(spec: TensorSpec | Composite, path: tuple[str, ...]) -> TensorSpec:
    if isinstance(spec, Composite):
        return cast(TensorSpec, spec[path])
    return spec


def _to_numpy(spec: TensorSpec, action: torch.Tensor) -> np.ndarray:
    """A group's stacked action as PettingZoo takes it: one-hot rows become indices."""
    if isinstance(spec, OneHot):
        return spec.to_numpy(action)
    return action.detach().cpu().numpy()


def _read(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        value = value[int(part)] if isinstance(value, tuple) else value[part]
    return value


class _Field:
    """One stacked entry of a group: where it is read in each agent's data, where it goes, its dtype and zero."""

    __slots__ = ("dtype", "key", "path", "zero")

    def __init__(self, key: tuple[str, ...], path: tuple[str, ...], spec: TensorSpec) -> None:
        self.key = key  # the entry under the group, e.g. ("observation",) or ("observation", "observation")
        self.path = path  # where one agent's value sits in its observation (dict) or info
        self.dtype = spec.dtype
        self.zero = np.zeros(tuple(spec.shape[1:]), dtype=str(spec.dtype).replace("torch.", ""))


class _Group:
    """A group of agents: names, action spec (whose mask is updated) and the fields to fill."""

    __slots__ = ("action_mask", "action_spec", "agents", "index", "info", "mask_key", "name", "observation")

    def __init__(self, name: str, agents: list[str]) -> None:
        self.name = name
        self.agents = agents
        self.index = {agent: i for i, agent in enumerate(agents)}
        self.observation: list[_Field] = []
        self.info: list[_Field] = []
        self.action_mask: str | None = None  # "observation" or "info": where the agents' action masks are
        self.action_spec: TensorSpec | None = None
        self.mask_key: tuple[str, str] = (name, "mask")
