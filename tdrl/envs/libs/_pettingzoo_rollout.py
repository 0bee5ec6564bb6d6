"""A policy-free rollout of a parallel PettingZoo env that writes straight into preallocated arrays.

``env.rollout(n)`` without a policy steps the env with random actions; the generic loop builds
two TensorDicts per step (the step's output and the next root) and copies each leaf into the
result. Here the actions are drawn for every step at once, PettingZoo's per-agent arrays are
written into one numpy buffer per entry (``[T, n_agents, ...]``), and the root at ``t + 1`` is
the step's output at ``t`` (or the reset's, after a done step), filled in with one copy per
entry at the end. The result equals the generic loop's for the same actions (tested).

Only the common case is handled: a parallel env on CPU whose groups have no action masks, no
info entries, no ``"mask"`` and no global state; :func:`fast_rollout` returns None otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.specs import TensorSpec

if TYPE_CHECKING:
    from tdrl.envs.libs.pettingzoo import PettingZooWrapper

__all__ = ["fast_rollout"]

_FLAGS = ("terminated", "truncated", "done")


def _supported(env: PettingZooWrapper, td: TensorDictBase) -> bool:
    if not env.parallel or env.device.type != "cpu" or env.return_state or env.use_mask:
        return False
    if any(group.action_mask is not None or group.info for group in env._groups):
        return False
    expected: set[Any] = {(group.name, *field.key) for group in env._groups for field in group.observation}
    expected |= {(group.name, flag) for group in env._groups for flag in _FLAGS}
    expected |= set(_FLAGS)
    return set(td.keys(True, True)) == expected


def _read(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        value = value[int(part)] if isinstance(value, tuple) else value[part]
    return value


def fast_rollout(
    env: PettingZooWrapper, td: TensorDictBase, max_steps: int, break_when_any_done: bool
) -> TensorDictBase | None:
    """``env.rollout(max_steps)`` with random actions, from the root ``td``; None when not supported."""
    if not _supported(env, td):
        return None
    from tdrl.envs.libs.pettingzoo import _DEAD_AGENT, _to_numpy

    backend = env._env
    groups = env._groups
    T = max_steps
    actions = {}
    numpy_actions = {}
    for group in groups:
        spec = cast(TensorSpec, group.action_spec)
        actions[group.name] = spec.rand((T,))
        numpy_actions[group.name] = _to_numpy(spec, actions[group.name])
    # per group: one buffer per observation field, the reward and the three flags, [T, n, ...]
    nxt: dict[str, dict[tuple[str, ...], np.ndarray]] = {}
    for group in groups:
        n = len(group.agents)
        buffers = {
            field.key: np.empty((T, n, *field.zero.shape), dtype=field.zero.dtype) for field in group.observation
        }
        buffers[("reward",)] = np.zeros((T, n, 1), dtype=np.float32)
        for flag in _FLAGS:
            buffers[(flag,)] = np.zeros((T, n, 1), dtype=bool)
        nxt[group.name] = buffers
    root_done = np.zeros((T, 3), dtype=bool)  # terminated, truncated, done of the whole env
    resets: dict[int, dict[str, dict[tuple[str, ...], np.ndarray]]] = {}  # step t+1 starts from a reset
    aggregate = np.any if env.done_on_any else np.all
    steps = T
    for t in range(T):
        step_actions = {}
        for group in groups:
            acts = numpy_actions[group.name][t]
            for i, agent in enumerate(group.agents):
                step_actions[agent] = acts[i]
        observations, rewards, terminations, truncations, _ = backend.step(step_actions)
        for group in groups:
            buffers = nxt[group.name]
            for i, agent in enumerate(group.agents):
                if agent not in observations:
                    raise ValueError(
                        _DEAD_AGENT.format(cls=type(env).__name__, agent=agent, live=sorted(backend.agents))
                    )
                data = observations[agent]
                for field in group.observation:
                    buffers[field.key][t, i] = _read(data, field.path) if field.path else data
                buffers[("reward",)][t, i, 0] = rewards.get(agent, 0.0)
                terminated = terminations.get(agent, False)
                truncated = truncations.get(agent, False)
                buffers[("terminated",)][t, i, 0] = terminated
                buffers[("truncated",)][t, i, 0] = truncated
                buffers[("done",)][t, i, 0] = terminated or truncated
        for j, flag in enumerate(_FLAGS):
            root_done[t, j] = aggregate([bool(aggregate(nxt[g.name][(flag,)][t])) for g in groups])
        if root_done[t, 2]:
            if break_when_any_done:
                steps = t + 1
                break
            if t < T - 1:
                observations, _ = env._reset_backend()
                resets[t + 1] = {
                    group.name: {
                        field.key: np.stack(
                            [
                                _read(observations[a], field.path) if field.path else observations[a]
                                for a in group.agents
                            ]
                        ).astype(field.zero.dtype, copy=False)
                        for field in group.observation
                    }
                    for group in groups
                }
    return _assemble(env, td, nxt, root_done, resets, actions, steps)


def _assemble(
    env: PettingZooWrapper,
    td: TensorDictBase,
    nxt: dict[str, dict[tuple[str, ...], np.ndarray]],
    root_done: np.ndarray,
    resets: dict[int, dict[str, dict[tuple[str, ...], np.ndarray]]],
    actions: dict[str, torch.Tensor],
    steps: int,
) -> TensorDictBase:
    """The rollout TensorDict: the root at ``t + 1`` is the output at ``t``, or the reset after a done step."""
    batch = torch.Size([steps])
    root_source: dict[str, Any] = {}
    next_source: dict[str, Any] = {}
    for group in env._groups:
        n = len(group.agents)
        group_td = td.get(group.name)
        root_entries: dict[Any, Any] = {}
        next_entries: dict[Any, Any] = {}
        for key, buffer in nxt[group.name].items():
            following = torch.from_numpy(buffer[:steps])
            next_entries[key if len(key) > 1 else key[0]] = following
            if key == ("reward",):
                continue
            current = torch.empty_like(following)
            current[0] = group_td.get(key if len(key) > 1 else key[0])
            current[1:] = following[:-1]
            for t, reset in resets.items():
                if t < steps:
                    current[t] = torch.from_numpy(reset[group.name][key]) if key in reset[group.name] else False
            root_entries[key if len(key) > 1 else key[0]] = current
        root_entries["action"] = actions[group.name][:steps]
        root_source[group.name] = env._td(root_entries, (steps, n))
        next_source[group.name] = env._td(next_entries, (steps, n))
    flags = torch.from_numpy(root_done[:steps]).unsqueeze(-1)
    for j, flag in enumerate(_FLAGS):
        following = flags[:, j].clone()
        current = torch.empty_like(following)
        current[0] = td.get(flag)
        current[1:] = following[:-1]
        for t in resets:
            if t < steps:
                current[t] = False
        next_source[flag] = following
        root_source[flag] = current
    root_source["next"] = td_unchecked(next_source, batch)
    return td_unchecked(root_source, batch)
