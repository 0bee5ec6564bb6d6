"""VMAS backend: ``VmasEnv(scenario, num_envs=...)`` and ``VmasWrapper(env)``, multi-agent and vectorised.

VMAS (the Vectorized Multi-Agent Simulator, the ``vmas`` package) simulates ``num_envs``
copies of a 2-D multi-agent scenario at once in pure torch. One tdrl env steps all of them:
its ``batch_size`` is ``[num_envs]``.

Agents are grouped as TorchRL groups them: agents named ``"<name>_<int>"`` go to the group
``"<name>"`` (a single group ``"agent"`` is called ``"agents"``); when a name does not follow
that rule, every agent goes to one group ``"agents"``. ``group_map`` overrides it with a dict
``{group: [agent names]}`` or a premade grouping (an object with ``get_group_map(names)``,
e.g. ``MarlGroupMapType.ONE_GROUP_PER_AGENT``). Each group's entries stack its agents along
a dim after the batch dim:

- ``(group, "observation")`` ``[num_envs, n_agents, obs_dim]`` (a dict observation becomes
  nested keys under ``(group, "observation")``);
- ``(group, "action")``: ``[num_envs, n_agents, action_dim]`` (continuous), an index
  ``[num_envs, n_agents]`` (``categorical_actions=True``) or a one-hot vector
  ``[num_envs, n_agents, n]``;
- ``(group, "reward")`` ``[num_envs, n_agents, 1]``;
- ``(group, "info", name)`` ``[num_envs, n_agents, k]`` float32, one per entry of the
  scenario's ``info``;
- ``"done"`` and ``"terminated"`` ``[num_envs, 1]`` at the root, for the whole sub-env, as in
  TorchRL (a per-agent value estimator expands them to the reward's shape). VMAS reports the
  end of an episode, whether the scenario ended or ``max_steps`` was reached, as one flag,
  so ``terminated`` equals ``done``; a VMAS env built with ``terminated_truncated=True``
  gives the two apart and adds ``"truncated"``.

``reset`` with a ``"_reset"`` mask resets only the flagged sub-envs (VMAS resets one index
at a time, so this loops over the flagged ones only); a step is one vectorised call.

Examples:
    >>> import pytest
    >>> _ = pytest.importorskip("vmas")
    >>> env = VmasEnv("navigation", num_envs=8, max_steps=20, seed=0, n_agents=3)
    >>> env.batch_size, env.group_map
    (torch.Size([8]), {'agents': ['agent_0', 'agent_1', 'agent_2']})
    >>> env.action_key, env.reward_key
    (('agents', 'action'), ('agents', 'reward'))
    >>> ro = env.rollout(5)
    >>> ro["next", "agents", "observation"].shape, ro["next", "agents", "reward"].shape
    (torch.Size([8, 5, 3, 18]), torch.Size([8, 5, 3, 1]))
    >>> ro["next", "done"].shape
    torch.Size([8, 5, 1])
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.envs.common import EnvBase
from tdrl.envs.libs._class_property import ClassProperty
from tdrl.envs.libs._vmas_specs import _default_group_map, _describe, _per_env, _space_to_spec, _stack_specs
from tdrl.specs import Categorical, Composite, MultiOneHot, OneHot, TensorSpec, Unbounded

__all__ = ["VmasEnv", "VmasWrapper"]

_MISSING = (
    "{what} needs vmas, an optional dependency of tdrl. Install it with "
    '`pip install "tdrl[vmas]"` (or `pip install vmas`).'
)
_RESERVED_GROUPS = ("next", "done", "terminated", "truncated", "_reset", "collector")
_BAD_GROUP_MAP = (
    "{env}: group_map {problem}. Every agent of the env ({agents}) must be in exactly one group; "
    "group_map is a dict {{group name: [agent names]}} or a premade grouping such as "
    "MarlGroupMapType.ALL_IN_ONE_GROUP or MarlGroupMapType.ONE_GROUP_PER_AGENT."
)
_HETEROGENEOUS = (
    "{env}: the agents of group {group!r} do not share one {what} spec ({first} has {a}, {other} has {b}); "
    "a group stacks its agents' entries into one tensor. Put agents with different specs in different groups, "
    "e.g. group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT or a dict {{group: [agent names]}}."
)
_ACTION_REFUSED = (
    "{env}.step: VMAS refused the action: {err} Actions must lie in env.full_action_spec ({spec}). "
    "Keep the policy's output in the box (e.g. TanhNormal with low/high from env.full_action_spec_unbatched), "
    "clamp it with spec.project(action), or build the env with clamp_actions=True (VMAS then clamps it)."
)


def _import_vmas(what: str) -> Any:
    """The vmas package, or an ImportError naming the extra to install."""
    try:
        return importlib.import_module("vmas")
    except ImportError as err:
        raise ImportError(_MISSING.format(what=what)) from err


def _scenarios() -> list[str]:
    """VMAS's scenario names (its own, the MPE ports and the debug ones), or [] without vmas."""
    try:
        vmas = importlib.import_module("vmas")
    except ImportError:
        return []
    return [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]


class VmasWrapper(EnvBase):
    """Wrap a VMAS environment (from ``vmas.make_env``) as a batched multi-agent tdrl env.

    Args:
        env: a ``vmas.simulator.environment.Environment`` built without a wrapper
            (``vmas.make_env(..., wrapper=None)``, the default) and with list spaces
            (``dict_spaces=False``, the default).
        categorical_actions: for discrete actions, write them as indices (``Categorical``)
            rather than one-hot vectors (``OneHot``). Ignored for continuous actions.
        group_map: how agents are grouped into entries: ``None`` for the default (see the
            module docstring), a dict ``{group: [agent names]}``, or a premade grouping
            (``MarlGroupMapType``; anything with ``get_group_map(agent_names)``).
        device: must be VMAS's device when given (the env's tensors live there).
        batch_size: must be ``[env.num_envs]`` when given.
        **kwargs: TorchRL's ``from_pixels``/``pixels_only`` are accepted only as ``False``.

    Attributes:
        group_map: the grouping in use, ``{group: [agent names]}``.
        agent_names: the agents' names, in VMAS's order.
        agent_names_to_indices_map: ``{agent name: index in VMAS's lists}``.
        het_specs: False: a group holds agents with equal specs (tdrl refuses others).
        het_specs_map: ``{group: False}``.

    Raises:
        TypeError: when ``env`` is not a VMAS environment, or for an unknown argument.
        ValueError: for a bad ``group_map``, a device or batch size that differs from the
            VMAS env's, dict spaces, or a group whose agents have different specs.

    Examples:
        >>> import pytest
        >>> vmas = pytest.importorskip("vmas")
        >>> env = VmasWrapper(vmas.make_env("balance", num_envs=4, continuous_actions=False, seed=0))
        >>> env.full_action_spec["agents", "action"]
        Categorical(shape=(4, 3), dtype=torch.int64, device=cpu, n=9)
        >>> env.rollout(3)["next", "agents", "reward"].shape
        torch.Size([4, 3, 3, 1])
    """

    available_envs = ClassProperty(lambda cls: _scenarios())
    """The scenario names ``VmasEnv`` accepts (``[]`` when vmas is not installed)."""

    def __init__(
        self,
        env: Any = None,
        categorical_actions: bool = True,
        group_map: Any = None,
        device: Any = None,
        batch_size: Any = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        if env is None:
            raise TypeError(f"{name} needs env=, a VMAS environment (e.g. vmas.make_env('navigation', num_envs=32)).")
        vmas = _import_vmas(name)
        if not isinstance(env, vmas.simulator.environment.Environment):
            raise TypeError(
                f"{name}: env must be a vmas.simulator.environment.Environment, got {type(env).__name__}. "
                f"Build it with vmas.make_env(scenario, num_envs=..., wrapper=None)."
            )
        for flag in ("from_pixels", "pixels_only"):
            if kwargs.pop(flag, False):
                raise ValueError(f"{name}: {flag}=True is not supported; call env.render() for frames.")
        kwargs.pop("allow_done_after_reset", None)  # TorchRL's flag: tdrl always allows it
        if kwargs:
            raise TypeError(f"{name}: unexpected arguments {sorted(kwargs)}.")
        env_device = torch.device(env.device)
        if device is not None and torch.device(device) != env_device:
            raise ValueError(
                f"{name}: device={device!r} but the VMAS env runs on {env_device}. Leave device out, or build the "
                f"VMAS env on that device (vmas.make_env(..., device={str(device)!r}))."
            )
        if batch_size is not None and tuple(batch_size) != (env.num_envs,):
            raise ValueError(
                f"{name}: batch_size={tuple(batch_size)} but the VMAS env simulates {env.num_envs} envs; "
                f"the batch size must be ({env.num_envs},) (or leave it out)."
            )
        if getattr(env, "dict_spaces", False):
            raise ValueError(f"{name}: VMAS envs with dict_spaces=True are not supported; build it with the default.")
        super().__init__(device=env_device, batch_size=(env.num_envs,))
        self._env = env
        self.categorical_actions = categorical_actions
        self.agent_names = [agent.name for agent in env.agents]
        self.agent_names_to_indices_map = {agent: i for i, agent in enumerate(self.agent_names)}
        self.group_map = self._check_group_map(group_map)
        self.het_specs = False
        self.het_specs_map = dict.fromkeys(self.group_map, False)
        self._build_specs()

    # --- construction ---------------------------------------------------------------------
    def _check_group_map(self, group_map: Any) -> dict[str, list[str]]:
        name, agents = type(self).__name__, self.agent_names
        if group_map is None:
            return _default_group_map(agents)
        if hasattr(group_map, "get_group_map"):
            group_map = group_map.get_group_map(agents)
        if not isinstance(group_map, Mapping):
            raise TypeError(
                _BAD_GROUP_MAP.format(
                    env=name, problem=f"must be a dict, got {type(group_map).__name__}", agents=agents
                )
            )
        seen: dict[str, str] = {}
        for group, members in group_map.items():
            if not isinstance(group, str) or not group or group in _RESERVED_GROUPS:
                problem = f"has the group name {group!r} (a group is a non-empty string other than {_RESERVED_GROUPS})"
                raise ValueError(_BAD_GROUP_MAP.format(env=name, problem=problem, agents=agents))
            if isinstance(members, str) or not members:
                problem = f"maps group {group!r} to {members!r} (expected a non-empty list of agent names)"
                raise ValueError(_BAD_GROUP_MAP.format(env=name, problem=problem, agents=agents))
            for agent in members:
                if agent not in self.agent_names_to_indices_map:
                    close = difflib.get_close_matches(str(agent), agents, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problem = f"names agent {agent!r}{hint}, which the env does not have"
                    raise ValueError(_BAD_GROUP_MAP.format(env=name, problem=problem, agents=agents))
                if agent in seen:
                    problem = f"puts agent {agent!r} in groups {seen[agent]!r} and {group!r}"
                    raise ValueError(_BAD_GROUP_MAP.format(env=name, problem=problem, agents=agents))
                seen[agent] = group
        missing = [agent for agent in agents if agent not in seen]
        if missing:
            raise ValueError(_BAD_GROUP_MAP.format(env=name, problem=f"leaves out agents {missing}", agents=agents))
        return {group: list(members) for group, members in group_map.items()}

    def _build_specs(self) -> None:
        env, dev, batch = self._env, self.device, self.batch_size
        infos = [env.scenario.info(agent) for agent in env.agents]
        observation = Composite(shape=batch)
        action = Composite(shape=batch)
        reward = Composite(shape=batch)
        # per group: the VMAS index of each member, in the group's order
        self._groups: list[tuple[str, list[int]]] = []
        self._info_keys: dict[str, list[str]] = {}
        for group, members in self.group_map.items():
            indices = [self.agent_names_to_indices_map[agent] for agent in members]
            self._groups.append((group, indices))
            group_specs: dict[str, TensorSpec | Composite] = {}
            for what, space_of in (("observation", env.observation_space), ("action", env.action_space)):
                agent_specs = [_space_to_spec(space_of[i], self.categorical_actions, dev) for i in indices]
                self._check_alike(group, what, members, agent_specs)
                group_specs[what] = _stack_specs(agent_specs, batch)
            info_specs = [
                Composite(
                    {
                        key: Unbounded(shape=_per_env(value, batch).shape[1:], device=dev)
                        for key, value in infos[i].items()
                    },
                    device=dev,
                )
                for i in indices
            ]
            self._check_alike(group, "info", members, info_specs)
            self._info_keys[group] = list(infos[indices[0]])
            lead = (*batch, len(indices))
            obs_group = Composite({"observation": group_specs["observation"]}, shape=lead)
            if self._info_keys[group]:
                obs_group["info"] = _stack_specs(info_specs, batch)
            observation[group] = obs_group
            action[group] = Composite({"action": group_specs["action"]}, shape=lead)
            reward[group] = Composite({"reward": Unbounded(shape=(*lead, 1), device=dev)}, shape=lead)
        self.observation_spec = observation
        self.full_action_spec = action
        self.full_reward_spec = reward
        flags = ("done", "terminated", "truncated") if self._env.terminated_truncated else ("done", "terminated")
        leaf = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=dev)
        self.full_done_spec = Composite({flag: leaf.clone() for flag in flags}, shape=batch)
        # how to read each group's action: one-hot blocks -> indices (None: as it is); VMAS's list is in agent order
        self._one_hot_blocks: dict[str, list[int] | None] = {}
        for group, _ in self._groups:
            spec = self.full_action_spec[group, "action"]
            if isinstance(spec, MultiOneHot):
                self._one_hot_blocks[group] = [int(n) for n in spec.nvec]
            elif isinstance(spec, OneHot):
                self._one_hot_blocks[group] = [spec.n]
            else:
                self._one_hot_blocks[group] = None
        order = [(g, pos) for g, (_, indices) in enumerate(self._groups) for pos in range(len(indices))]
        flat_indices = [i for _, indices in self._groups for i in indices]
        self._action_order = [order[flat_indices.index(i)] for i in range(len(self.agent_names))]

    def _check_alike(self, group: str, what: str, members: list[str], specs: list) -> None:
        first = _describe(specs[0])
        for member, spec in zip(members[1:], specs[1:]):
            if _describe(spec) != first:
                raise ValueError(
                    _HETEROGENEOUS.format(
                        env=type(self).__name__,
                        group=group,
                        what=what,
                        first=members[0],
                        a=specs[0],
                        other=member,
                        b=spec,
                    )
                )

    # --- VMAS's attributes ----------------------------------------------------------------
    @property
    def env(self) -> Any:
        """The wrapped VMAS environment."""
        return self._env

    @property
    def scenario(self) -> Any:
        """The VMAS scenario object."""
        return self._env.scenario

    @property
    def agents(self) -> list:
        """VMAS's agent objects, in its order."""
        return self._env.agents

    @property
    def n_agents(self) -> int:
        """How many agents the scenario has (over all groups)."""
        return self._env.n_agents

    @property
    def num_envs(self) -> int:
        """How many sub-envs VMAS simulates (the batch size)."""
        return self._env.num_envs

    @property
    def continuous_actions(self) -> bool:
        """Whether actions are continuous (else discrete)."""
        return self._env.continuous_actions

    @property
    def max_steps(self) -> int | None:
        """VMAS's horizon (``None``: none)."""
        return self._env.max_steps

    # --- conversions ----------------------------------------------------------------------
    def _group_outputs(self, obs: list, rewards: list | None, infos: list) -> dict:
        out: dict = {}
        batch = self.batch_size
        for group, indices in self._groups:
            lead = torch.Size((*batch, len(indices)))
            entries: dict = {"observation": self._stack_obs([obs[i] for i in indices], lead)}
            if rewards is not None:
                entries["reward"] = torch.stack([rewards[i] for i in indices], dim=-1).unsqueeze(-1)
            keys = self._info_keys[group]
            if keys:
                entries["info"] = td_unchecked(
                    {
                        key: torch.stack([_per_env(infos[i][key], batch) for i in indices], dim=1).to(torch.float32)
                        for key in keys
                    },
                    lead,
                )
            out[group] = td_unchecked(entries, lead)
        return out

    def _stack_obs(self, values: list, lead: torch.Size) -> Any:
        if isinstance(values[0], Mapping):
            return td_unchecked({key: self._stack_obs([v[key] for v in values], lead) for key in values[0]}, lead)
        return torch.stack([_per_env(v, self.batch_size) for v in values], dim=1)

    def _flags(self, dones: list) -> dict:
        if self._env.terminated_truncated:
            terminated, truncated = (_per_env(d, self.batch_size) for d in dones)
            return {"done": terminated | truncated, "terminated": terminated, "truncated": truncated}
        done = _per_env(dones[0], self.batch_size)
        return {"done": done, "terminated": done.clone()}

    def _actions(self, tensordict: TensorDictBase) -> list[torch.Tensor]:
        """VMAS's list of per-agent actions ``[num_envs, action_size]`` from the groups' entries."""
        per_group = []
        for group, _ in self._groups:
            action = tensordict.get((group, "action"))
            blocks = self._one_hot_blocks[group]
            if blocks is not None:
                if len(blocks) == 1:
                    action = action.argmax(-1)
                else:
                    action = torch.stack([part.argmax(-1) for part in action.split(blocks, -1)], -1)
            if action.ndim == self.batch_dims + 1:  # one index per agent: VMAS wants [num_envs, 1]
                action = action.unsqueeze(-1)
            per_group.append(action.unbind(self.batch_dims))
        return [per_group[g][pos] for g, pos in self._action_order]

    # --- EnvBase --------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        self._env.seed(seed)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = tensordict.get("_reset", None) if tensordict is not None else None
        if mask is None or bool(mask.all()):
            self._env.reset(return_observations=False)
        else:
            for index in mask.reshape(self.batch_size).nonzero().flatten().tolist():
                self._env.reset_at(index, return_observations=False)
        obs, dones, infos = self._split_dones(
            self._env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=True, get_dones=True)
        )
        source = self._group_outputs(obs, None, infos)
        source.update(self._flags(dones))
        return td_unchecked(source, self.batch_size)

    def _split_dones(self, result: list) -> tuple[list, list, list]:
        """``(observations, [done] or [terminated, truncated], infos)`` from get_from_scenario's list."""
        return result[0], result[1:-1], result[-1]

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = self._actions(tensordict)
        try:
            result = self._env.step(actions)
        except AssertionError as err:  # VMAS checks its actions with assert
            raise ValueError(
                _ACTION_REFUSED.format(env=type(self).__name__, err=err, spec=self.full_action_spec)
            ) from err
        obs, rewards, dones, infos = result[0], result[1], result[2:-1], result[-1]
        source = self._group_outputs(obs, rewards, infos)
        source.update(self._flags(dones))
        return td_unchecked(source, self.batch_size)

    def render(self, mode: str = "rgb_array", env_index: int = 0, **kwargs: Any) -> Any:
        """A frame of one sub-env, drawn by VMAS (pyglet).

        Unlike VMAS, the default mode is ``"rgb_array"`` (a ``uint8 [H, W, 3]`` numpy array),
        which works without a display; ``mode="human"`` opens a window.

        Args:
            mode: ``"rgb_array"`` or ``"human"``.
            env_index: which sub-env to draw.
            **kwargs: VMAS's other render arguments (``agent_index_focus``, ``visualize_when_rgb``, ...).

        Raises:
            ValueError: for an ``env_index`` outside ``[0, num_envs)``.
            RuntimeError: when VMAS cannot render (with VMAS's error).

        Examples:
            >>> import pytest
            >>> _ = pytest.importorskip("vmas")
            >>> env = VmasEnv("navigation", num_envs=2, seed=0)
            >>> env.render().shape
            (700, 700, 3)
        """
        if not 0 <= env_index < self.num_envs:
            raise ValueError(f"{type(self).__name__}.render: env_index={env_index} outside [0, {self.num_envs}).")
        try:
            return self._env.render(mode=mode, env_index=env_index, **kwargs)
        except (ImportError, OSError, RuntimeError, AssertionError) as err:
            raise RuntimeError(
                f"{type(self).__name__}.render failed: {type(err).__name__}: {err}. VMAS draws with pyglet: install "
                f"it (pip install pyglet) and, without a display, use mode='rgb_array' (and, if that fails too, a "
                f"virtual display such as Xvfb)."
            ) from err

    def to(self, device: Any) -> VmasWrapper:  # type: ignore[override]
        """Move the simulator and the specs to ``device``."""
        device = torch.device(device)
        self._env.to(device)
        self.device = device
        self._build_specs()
        return self

    def close(self) -> None:
        super().close()
        env = getattr(self, "_env", None)
        if env is not None and getattr(env, "viewer", None) is not None:
            env.viewer.close()
            env.viewer = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, n_agents={self.n_agents}, "
            f"group_map={self.group_map}, device={self.device})"
        )


class VmasEnv(VmasWrapper):
    """Build a VMAS scenario by name and wrap it (see :class:`VmasWrapper` for the entries).

    Args:
        scenario: a name from ``VmasEnv.available_envs`` (e.g. ``"navigation"``) or a
            ``vmas.simulator.scenario.BaseScenario`` instance.
        num_envs: how many sub-envs VMAS simulates at once (the batch size).
        continuous_actions: continuous actions (default) or discrete ones.
        max_steps: the horizon; when reached, the sub-env is ``done`` (and ``terminated``,
            as VMAS reports one flag). ``None``: no horizon.
        categorical_actions: discrete actions as indices (default) or one-hot vectors.
        seed: VMAS's seed (``set_seed`` reseeds later).
        group_map: the grouping of agents (see :class:`VmasWrapper`).
        scenario_kwargs: arguments to the scenario (e.g. ``{"n_agents": 3}``).
        device: where VMAS simulates (default CPU).
        **kwargs: more arguments to the scenario, or to ``vmas.make_env``
            (``clamp_actions``, ``terminated_truncated``, ...); they win over ``scenario_kwargs``.

    Raises:
        ImportError: when vmas is not installed (naming the extra).
        ValueError: for an unknown scenario name (listing close ones).

    Examples:
        >>> import pytest
        >>> _ = pytest.importorskip("vmas")
        >>> env = VmasEnv("navigation", num_envs=4, continuous_actions=False, categorical_actions=False, seed=0)
        >>> env.full_action_spec["agents", "action"].shape
        torch.Size([4, 4, 9])
        >>> VmasEnv("navigaton", num_envs=4)
        Traceback (most recent call last):
        ...
        ValueError: VmasEnv: unknown scenario 'navigaton'. Did you mean ['navigation']? See VmasEnv.available_envs.
    """

    def __init__(
        self,
        scenario: Any,
        *,
        num_envs: int,
        continuous_actions: bool = True,
        max_steps: int | None = None,
        categorical_actions: bool = True,
        seed: int | None = None,
        group_map: Any = None,
        scenario_kwargs: dict | None = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        vmas = _import_vmas("VmasEnv")
        if isinstance(scenario, str) and scenario not in _scenarios():
            close = difflib.get_close_matches(scenario, _scenarios(), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"VmasEnv: unknown scenario {scenario!r}.{hint} See VmasEnv.available_envs.")
        if int(num_envs) < 1:
            raise ValueError(f"VmasEnv: num_envs must be >= 1, got {num_envs}.")
        for flag in ("from_pixels", "pixels_only"):
            if kwargs.pop(flag, False):
                raise ValueError(f"VmasEnv: {flag}=True is not supported; call env.render() for frames.")
        batch_size = kwargs.pop("batch_size", None)
        self.scenario_name = scenario
        env = vmas.make_env(
            scenario=scenario,
            num_envs=int(num_envs),
            device=torch.device(device) if device is not None else torch.device("cpu"),
            continuous_actions=continuous_actions,
            max_steps=max_steps,
            seed=seed,
            wrapper=None,
            **{**(scenario_kwargs or {}), **kwargs},
        )
        super().__init__(
            env, categorical_actions=categorical_actions, group_map=group_map, device=device, batch_size=batch_size
        )

    def __repr__(self) -> str:
        return f"{super().__repr__()} (scenario={self.scenario_name})"
