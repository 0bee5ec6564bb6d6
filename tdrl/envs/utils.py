"""Env utilities: moving to the next step, checking specs, the exploration mode and the validation mode.

``ExplorationType`` and ``set_exploration_type`` are tensordict's interaction type under
the names RL code uses: probabilistic modules from ``tensordict.nn`` and ``tdrl.modules``
read the same global, so one ``with set_exploration_type(...)`` block drives all of them.
``set_validation`` switches on, for a block or a function, the checks of every action
(and optionally every output) against the env's specs.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> env = CountingEnv(max_steps=5)
    >>> td = env.rand_step(env.reset())
    >>> step_mdp(td)["observation"]
    tensor([1.])
    >>> with set_exploration_type(ExplorationType.MEAN):
    ...     exploration_type()
    <InteractionType.MEAN: 'mean'>
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, cast

import torch
from tensordict import TensorDictBase, is_tensor_collection
from tensordict.nn import InteractionType, set_interaction_type
from tensordict.nn.probabilistic import interaction_type as _interaction_type

from tdrl.envs._validation import _value_problem, set_validation, validation_enabled
from tdrl.modules.exploration import RandomPolicy  # importable here too, as in TorchRL
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

if TYPE_CHECKING:
    from tdrl.envs.common import EnvBase

__all__ = [
    "ExplorationType",
    "set_exploration_type",
    "exploration_type",
    "step_mdp",
    "check_env_specs",
    "set_validation",
    "validation_enabled",
    "DONE_KEYS",
    "RandomPolicy",
    "MarlGroupMapType",
    "check_marl_grouping",
    "make_composite_from_td",
    "terminated_or_truncated",
    "make_tensordict",
    "get_available_libraries",
]

ExplorationType = InteractionType
"""The exploration mode: ``RANDOM`` samples, ``MEAN``/``MODE``/``DETERMINISTIC`` do not."""

set_exploration_type = set_interaction_type
"""Context manager and decorator: ``with set_exploration_type(ExplorationType.MEAN): ...``."""

DONE_KEYS = ("done", "terminated", "truncated")
"""The end-of-episode entries every env writes: ``done`` is ``terminated | truncated``."""


def exploration_type() -> ExplorationType | None:
    """The exploration mode in force (``None`` outside any ``set_exploration_type`` block)."""
    return _interaction_type()


def _as_keys(keys: NestedKey | Sequence[NestedKey] | None) -> list:
    """A key or a list of keys as a list (a tuple of strings is one nested key)."""
    if keys is None:
        return []
    if isinstance(keys, (str, tuple)):
        return [keys]
    return list(keys)


def step_mdp(
    tensordict: TensorDictBase,
    next_tensordict: TensorDictBase | None = None,
    keep_other: bool = True,
    exclude_reward: bool = True,
    exclude_done: bool = False,
    exclude_action: bool = True,
    reward_keys: NestedKey | Sequence[NestedKey] = "reward",
    done_keys: NestedKey | Sequence[NestedKey] | None = None,
    action_keys: NestedKey | Sequence[NestedKey] = "action",
) -> TensorDictBase:
    """The TensorDict of the following step: ``"next"`` moved to the root.

    Args:
        tensordict: a TensorDict written by ``env.step`` (it has a ``"next"`` entry).
        next_tensordict: if given, the result is written into it (in place).
        keep_other: keep root entries that ``"next"`` does not hold (e.g. a policy's
            recurrent state), except the action.
        exclude_reward: drop the reward from the result.
        exclude_done: drop the done flags from the result.
        exclude_action: drop the action from the result.
        reward_keys: the reward entries.
        done_keys: the done entries (default ``["done", "terminated", "truncated"]``).
        action_keys: the action entries.

    Returns:
        A new TensorDict sharing its tensors with ``tensordict["next"]`` (no copy).

    Raises:
        KeyError: when ``tensordict`` has no ``"next"`` entry.
    """
    nxt = tensordict.get("next", None)
    if nxt is None:
        raise KeyError(
            f"step_mdp needs a 'next' entry (written by env.step); the tensordict has keys "
            f"{sorted(map(str, tensordict.keys()))}. Call env.step(td) first."
        )
    out = nxt.copy()
    drop = []
    if exclude_reward:
        drop += _as_keys(reward_keys)
    if exclude_done:
        drop += list(DONE_KEYS) if done_keys is None else _as_keys(done_keys)
    if drop:
        out = out.exclude(*drop)
    if keep_other:
        skip = set(_as_keys(action_keys)) if exclude_action else set()
        skip.add("next")
        for key in tensordict.keys():
            if key not in skip and key not in out.keys():
                out.set(key, tensordict.get(key))
    if next_tensordict is not None:
        return next_tensordict.update(out)
    return out


def _check_entries(spec: Composite, data: TensorDictBase, where: str, strict: bool, values: bool = True) -> None:
    spec_keys = set(spec.keys(True, True))
    for key in spec_keys:
        leaf = cast(TensorSpec, spec[key])  # keys(True, True) are leaves
        shown = (where, *key) if isinstance(key, tuple) else (where, key) if where else key
        if key not in data.keys(True, True):
            raise ValueError(
                f"check_env_specs: the spec declares {shown!r} but the env did not write it "
                f"(it wrote {sorted(map(str, data.keys(True, True)))}). Write the entry in "
                f"_step/_reset, or remove it from the spec."
            )
        value = data.get(key)
        expected_shape = (*data.batch_size, *leaf.shape[len(spec.shape) :])
        if tuple(value.shape) != expected_shape:
            raise ValueError(
                f"check_env_specs: {shown!r} has shape {tuple(value.shape)} but its spec says "
                f"{expected_shape} (spec {leaf}). Fix the spec or the data the env writes."
            )
        if value.dtype != leaf.dtype:
            raise ValueError(
                f"check_env_specs: {shown!r} has dtype {value.dtype} but its spec says {leaf.dtype}. "
                f"Cast the data or change the spec's dtype."
            )
        why = _value_problem(leaf, value) if values else leaf.mismatch(value)
        if why is not None:
            raise ValueError(f"check_env_specs: {shown!r} is outside its spec: {why}. Spec: {leaf}")
    if strict:
        extra = [k for k in data.keys(True, True) if k not in spec_keys]
        if extra:
            raise ValueError(
                f"check_env_specs: the env wrote {extra} under {where or 'the root'!r} but no spec "
                f"declares them. A transform that adds or renames an entry must update the spec "
                f"(transform_observation_spec & co)."
            )


def check_env_specs(
    env: EnvBase,
    return_contiguous: bool = True,
    check_dtype: bool = True,
    seed: int | None = None,
    num_steps: int = 3,
    validate: bool = True,
) -> None:
    """Run a short rollout and check every entry against the env's specs.

    Each entry the env writes must be declared by a spec with the same shape (batch dims
    included), dtype and domain; each declared entry must be written. The first mismatch
    raises a ``ValueError`` naming the key, the expected and the found value.

    Args:
        env: the env to check.
        return_contiguous: kept for TorchRL compatibility (rollouts are always contiguous).
        check_dtype: kept for TorchRL compatibility (dtypes are always checked).
        seed: if given, seed the env first.
        num_steps: how many steps to run.
        validate: also check values: steps run under :class:`set_validation` (the
            random actions drawn from the action spec must be in it), and NaN or inf in
            any entry the env writes is an error.

    Raises:
        ValueError: the first entry whose data does not match its spec.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> check_env_specs(CountingEnv())
    """
    if seed is not None:
        env.set_seed(seed)
    root_spec = Composite(shape=env.batch_size)
    for part in (env.full_observation_spec, env.full_done_spec, env.full_action_spec):
        root_spec.update(part.clone())
    next_spec = Composite(shape=env.batch_size)
    for part in (env.full_observation_spec, env.full_done_spec, env.full_reward_spec):
        next_spec.update(part.clone())
    known = set(root_spec.keys(True, True)) | set(next_spec.keys(True, True))
    known |= set(env.full_state_spec.keys(True, True))
    observed = set(env.full_observation_spec.keys())
    state_only = [key for key in env.full_state_spec.keys() if key not in observed]  # a stateless env has both
    from tdrl.envs.transforms.next_obs import _delta_layout  # (tdrl.envs.transforms imports tdrl.envs.utils)

    layout = _delta_layout(env)  # NextObservationDelta's deltas: written under "next" only, not declared
    state_only += layout.root_keys
    with set_validation(validate):
        td = env.reset()
        for _ in range(num_steps):
            td = env.step(env.rand_action(td))
            nxt = td.get("next").exclude(*state_only)
            _check_entries(next_spec, nxt, "next", strict=True, values=validate)
            root = td.exclude("next")
            extra_root = [k for k in root.keys(True, True) if k not in known]
            if extra_root:
                raise ValueError(
                    f"check_env_specs: the env wrote {extra_root} at the root but no spec declares them. "
                    f"Declare them in observation_spec (or state_spec for inputs)."
                )
            _check_entries(root_spec, root, "", strict=False, values=validate)
            td = layout.next_root(env._next_root(td))


class MarlGroupMapType(Enum):
    """Ready-made ways to group the agents of a multi-agent env (its ``group_map``).

    A group's agents are stacked into one TensorDict under the group's name (entries
    ``(group, "observation")`` of shape ``[*B, n_agents_in_group, ...]``), so that one
    network processes them together; agents in different groups get different entries.

    - ``ALL_IN_ONE_GROUP``: one group ``"agents"`` holding every agent;
    - ``ONE_GROUP_PER_AGENT``: each agent is a group of its own, named after it.

    Examples:
        >>> MarlGroupMapType.ALL_IN_ONE_GROUP.get_group_map(["agent_0", "agent_1"])
        {'agents': ['agent_0', 'agent_1']}
        >>> MarlGroupMapType.ONE_GROUP_PER_AGENT.get_group_map(["agent_0", "agent_1"])
        {'agent_0': ['agent_0'], 'agent_1': ['agent_1']}
    """

    ALL_IN_ONE_GROUP = 1
    ONE_GROUP_PER_AGENT = 2

    def get_group_map(self, agent_names: list[str]) -> dict[str, list[str]]:
        """The ``{group name: [agent names]}`` this grouping gives ``agent_names``."""
        if self is MarlGroupMapType.ALL_IN_ONE_GROUP:
            return {"agents": list(agent_names)}
        return {name: [name] for name in agent_names}


def check_marl_grouping(group_map: dict[str, list[str]], agent_names: list[str]) -> None:
    """Check that ``group_map`` puts every agent of ``agent_names`` in exactly one non-empty group.

    Args:
        group_map: ``{group name: [agent names]}``.
        agent_names: every agent of the env.

    Raises:
        ValueError: no agents, duplicate agent names, more groups than agents, an empty
            group, an agent that is not in the env, in two groups, or in none.

    Examples:
        >>> names = ["agent_0", "agent_1", "agent_2"]
        >>> check_marl_grouping(MarlGroupMapType.ALL_IN_ONE_GROUP.get_group_map(names), names)
        >>> check_marl_grouping({"team": ["agent_0", "agent_1"]}, names)
        Traceback (most recent call last):
        ...
        ValueError: check_marl_grouping: agent 'agent_2' is in no group (groups: ['team']); add it to one.
    """
    fix = "Give each agent of the env exactly one group, e.g. MarlGroupMapType.ALL_IN_ONE_GROUP.get_group_map(names)."
    if not agent_names:
        raise ValueError("check_marl_grouping: the env has no agents (agent_names is empty).")
    if len(set(agent_names)) != len(agent_names):
        twice = sorted({n for n in agent_names if list(agent_names).count(n) > 1})
        raise ValueError(f"check_marl_grouping: agent names must be unique; {twice} appear more than once.")
    if len(group_map) > len(agent_names):
        raise ValueError(
            f"check_marl_grouping: {len(group_map)} groups for {len(agent_names)} agents; a group holds at least "
            f"one agent. {fix}"
        )
    group_of: dict[str, str] = {}
    known = set(agent_names)
    for group, members in group_map.items():
        if not len(members):
            raise ValueError(f"check_marl_grouping: group {group!r} is empty. {fix}")
        for name in members:
            if name not in known:
                raise ValueError(
                    f"check_marl_grouping: group {group!r} names agent {name!r}, which is not in the env "
                    f"(agents: {list(agent_names)}). {fix}"
                )
            if name in group_of:
                raise ValueError(
                    f"check_marl_grouping: agent {name!r} is in groups {group_of[name]!r} and {group!r}; "
                    f"an agent belongs to one group. {fix}"
                )
            group_of[name] = group
    for name in agent_names:
        if name not in group_of:
            raise ValueError(
                f"check_marl_grouping: agent {name!r} is in no group (groups: {list(group_map)}); add it to one."
            )


def make_composite_from_td(
    data: TensorDictBase, *, unsqueeze_null_shapes: bool = True, dynamic_shape: bool = False
) -> Composite:
    """A :class:`~tdrl.specs.Composite` of unbounded specs shaped like ``data``'s entries.

    Each tensor becomes an :class:`~tdrl.specs.Unbounded` with its shape, dtype and device;
    each nested TensorDict a nested ``Composite`` with its batch size. Handy to write the
    specs of a custom env from one example step.

    Args:
        data: the TensorDict to describe.
        unsqueeze_null_shapes: a scalar entry (shape ``()``) gets the spec shape ``(1,)``.
        dynamic_shape: TorchRL marks the last dim as dynamic (``-1``); tdrl's specs have
            static shapes, so only ``False`` is accepted.

    Returns:
        The ``Composite``, with ``data``'s batch size as its shape.

    Raises:
        ValueError: ``dynamic_shape=True``.
        TypeError: an entry is neither a tensor nor a TensorDict (non-tensor data has no spec in tdrl).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"obs": torch.randn(3), "action": torch.zeros(2, dtype=torch.int32),
        ...                    "next": {"obs": torch.randn(3), "reward": torch.tensor(0.5)}}, [])
        >>> spec = make_composite_from_td(data)
        >>> spec["next", "reward"].shape, spec["action"].dtype
        (torch.Size([1]), torch.int32)
        >>> spec.is_in(TensorDict({"obs": torch.zeros(3), "action": torch.ones(2, dtype=torch.int32),
        ...                        "next": {"obs": torch.ones(3), "reward": torch.ones(1)}}, []))
        True
    """
    if dynamic_shape:
        raise ValueError(
            "make_composite_from_td: dynamic_shape=True is not supported: tdrl's specs have static shapes. "
            "Pass dynamic_shape=False (the default) and give variable-length entries their largest shape."
        )
    specs: dict[str, TensorSpec | Composite] = {}
    for key, value in data.items():
        if is_tensor_collection(value) and isinstance(value, TensorDictBase):
            specs[key] = make_composite_from_td(value, unsqueeze_null_shapes=unsqueeze_null_shapes)
        elif isinstance(value, torch.Tensor):
            shape = value.shape if value.shape or not unsqueeze_null_shapes else torch.Size([1])
            specs[key] = Unbounded(shape=shape, dtype=value.dtype, device=value.device)
        else:
            raise TypeError(
                f"make_composite_from_td: entry {key!r} is a {type(value).__name__}, which has no tdrl spec; "
                "keep only tensors and TensorDicts (data.exclude(...)) before describing the data."
            )
    return Composite(specs, shape=data.shape, device=data.device)


_END_FLAGS = ("done", "terminated", "truncated")


def terminated_or_truncated(
    data: TensorDictBase,
    full_done_spec: Composite | None = None,
    key: NestedKey | None = "_reset",
    write_full_false: bool = False,
) -> bool:
    """Aggregate the end-of-episode flags of ``data``, at every nesting level, into ``key`` (in place).

    At each level of ``data`` that holds ``"done"``, ``"terminated"`` or ``"truncated"``
    (or, given ``full_done_spec``, the leaves that spec lists), the OR of those flags is
    written under ``key`` at that level (e.g. ``"_reset"`` for a partial reset, or
    ``("agents", "_reset")`` for a group of agents). When no flag is set anywhere, the
    written entries are removed again unless ``write_full_false``.

    Args:
        data: a step's output (e.g. ``td["next"]``).
        full_done_spec: the env's ``full_done_spec``, naming the flags to read (a flag
            missing from ``data`` counts as False). Default: the three standard names.
        key: where each level's aggregate goes; ``None`` writes nothing.
        write_full_false: keep the written entries even when every flag is False.

    Returns:
        Whether any flag was set (a Python bool).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"done": torch.tensor([[False], [True]]), "truncated": torch.tensor([[True], [False]]),
        ...                    "agents": {"done": torch.zeros(2, 1, dtype=torch.bool)}}, [2])
        >>> terminated_or_truncated(data)
        True
        >>> data["_reset"].squeeze(-1), data["agents", "_reset"].squeeze(-1)
        (tensor([True, True]), tensor([False, False]))
    """
    written: list[tuple] = []

    def visit(node: TensorDictBase, spec: Composite | None, prefix: tuple) -> bool:
        found = False
        aggregate: torch.Tensor | None = None
        items = spec.items() if spec is not None else node.items()
        for name, item in items:
            if isinstance(item, Composite) or (spec is None and isinstance(item, TensorDictBase)):
                child = node.get(name, None)
                if isinstance(child, TensorDictBase):
                    found = visit(child, item if isinstance(item, Composite) else None, (*prefix, name)) or found
                continue
            if spec is None and name not in _END_FLAGS:
                continue
            flag = node.get(name, None)
            if flag is None:
                flag = torch.zeros((*node.batch_size, 1), dtype=torch.bool, device=node.device)
            aggregate = flag.bool() if aggregate is None else aggregate | flag.bool()
        if aggregate is not None:
            if key is not None:
                node.set(key, aggregate)
                written.append((*prefix, *(key if isinstance(key, tuple) else (key,))))
            found = bool(aggregate.any()) or found
        return found

    any_end = visit(data, full_done_spec, ())
    if not any_end and not write_full_false:
        for entry in written:
            data.del_(entry)
    return any_end


def make_tensordict(env: EnvBase, policy: Callable[[TensorDictBase], TensorDictBase] | None = None) -> TensorDictBase:
    """A zeroed TensorDict with every entry of one full step of ``env`` (reset, action, step).

    Useful to preallocate storage or to trace a module: it holds the root entries, the
    action (from ``policy`` or a random draw) and the ``"next"`` entries, all set to zero.

    Args:
        env: the env.
        policy: writes the action (default: a random action from ``env.action_spec``).

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> td = make_tensordict(CountingEnv())
        >>> sorted(td.keys()), float(td["next", "observation"].sum())
        (['action', 'done', 'next', 'observation', 'terminated', 'truncated'], 0.0)
    """
    with torch.no_grad():
        tensordict = env.reset()
        if policy is not None:
            tensordict = policy(tensordict)
        else:
            tensordict = env.rand_action(tensordict)
        tensordict = env.step(tensordict)
    return tensordict.zero_()


_LIBRARIES = {
    "gymnasium": "gymnasium",
    "dm_control": "dm_control",
    "mujoco": "mujoco",
    "vmas": "vmas",
    "pettingzoo": "pettingzoo",
}


def get_available_libraries() -> dict[str, bool]:
    """The env backends tdrl supports, each with whether it is installed (nothing is imported).

    Returns:
        ``{"gymnasium": bool, "dm_control": bool, "mujoco": bool, "vmas": bool, "pettingzoo": bool}``.
        TorchRL also lists ``gym`` and others, which tdrl does not wrap.

    Examples:
        >>> libraries = get_available_libraries()
        >>> libraries["gymnasium"]
        True
    """
    return {name: importlib.util.find_spec(module) is not None for name, module in _LIBRARIES.items()}
