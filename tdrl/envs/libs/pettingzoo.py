"""PettingZoo backend: ``PettingZooEnv(task, parallel)`` and ``PettingZooWrapper(env)``.

PettingZoo's two APIs are both wrapped. In a ``ParallelEnv`` every live agent acts at each
step; in an ``AECEnv`` the agents take turns (``agent_selection``), one per tdrl step, and
``use_mask=True`` is required so that each group's ``"mask"`` says which agent acts next.

Agents are gathered in groups whose tensors are stacked along a leading agent dim: group
``"agent"`` holding ``agent_0 .. agent_2`` reads ``("agent", "observation")`` of shape
``[3, *obs_shape]`` and writes ``("agent", "action")`` of shape ``[3, *action_shape]``. By
default (as in TorchRL) a parallel env groups agents named ``<prefix>_<int>`` by prefix
(``adversary_0`` -> ``"adversary"``, ``agent_1`` -> ``"agent"``) and gives any other name a
group of its own; an AEC env gives each agent its own group. ``group_map`` overrides that
with a dict ``{group: [agent, ...]}`` or a premade map (any object with
``get_group_map(agent_names)``, such as ``MarlGroupMapType.ONE_GROUP_PER_AGENT``).

Each group writes ``"reward"``, ``"done"``, ``"terminated"`` and ``"truncated"`` of shape
``[n_agents, 1]``; the root ``"done"``/``"terminated"``/``"truncated"`` (shape ``[1]``)
aggregate them over every agent with ``any`` (``done_on_any=True``, the default for
parallel envs) or ``all`` (the default for AEC envs). An agent's ``"action_mask"``, found in
its observation dict or its info dict, is moved to ``(group, "action_mask")`` (bool, one
entry per action) and also set as the mask of the group's action spec, so that
``env.rand_action`` only draws legal actions. Numeric info entries present at reset are
written under ``(group, "info", name)``; ``return_state=True`` adds the global ``"state"``.

Examples:
    >>> env = PettingZooEnv("tictactoe_v3", parallel=False, use_mask=True, seed=0)
    >>> env.group_map
    {'player_1': ['player_1'], 'player_2': ['player_2']}
    >>> td = env.reset()
    >>> td["player_1", "mask"], td["player_2", "mask"]
    (tensor([True]), tensor([False]))
    >>> td["player_1", "action_mask"].shape
    torch.Size([1, 9])
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.envs.common import EnvBase
from tdrl.envs.libs._class_property import ClassProperty
from tdrl.envs.libs._pettingzoo_groups import (
    _at,
    _check_group_map,
    _default_group_map,
    _Field,
    _Group,
    _leaf_paths,
    _read,
    _stack_leaves,
    _to_numpy,
)
from tdrl.envs.libs._pettingzoo_rollout import fast_rollout
from tdrl.envs.libs.gym import space_to_spec
from tdrl.specs import Categorical, Composite, OneHot, TensorSpec, Unbounded

__all__ = ["PettingZooEnv", "PettingZooWrapper"]

_MISSING = (
    "{what} needs pettingzoo, an optional dependency of tdrl. Install it with "
    '`pip install "tdrl[pettingzoo]"` (it brings pettingzoo and the MPE tasks of mpe2).'
)
_AEC_NEEDS_MASK = (
    "{cls}: an AEC env (here {env}) lets one agent act per step, so the wrapper must say which one: "
    "build it with use_mask=True (each group then writes a 'mask' of the agents acting next)."
)
_DEAD_AGENT = (
    "{cls}: agent {agent!r} is no longer in the env (live agents: {live}), so its entries cannot be written. "
    "Build the env with use_mask=True: each group then writes a 'mask' that is False for finished agents."
)
_EPISODE_OVER = (
    "{cls}.step: the episode is over (PettingZoo has no live agent left), so there is nothing to step. "
    "Reset when the root 'done' is set: env.reset(), or env.rollout / a collector, which reset for you."
)
_UNEVEN_GROUP = (
    "{cls}: the agents of group {group!r} ({agents}) have different {what} spaces at {key!r}: {specs}. "
    "Agents of one group are stacked, so their spaces must agree; put them in separate groups, e.g. "
    "group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT or a dict {{group: [agent, ...]}}."
)
_FAMILIES = ("atari", "butterfly", "classic", "sisl")  # pettingzoo.<family>.<task>_vN
_TASK_NAME = re.compile(r"^\w+_v\d+$")


def _import_pettingzoo(what: str) -> Any:
    try:
        import pettingzoo
    except ImportError as err:
        raise ImportError(_MISSING.format(what=what)) from err
    return pettingzoo


def _task_modules() -> dict[str, str]:
    """``{"family/task_vN": module path}`` for PettingZoo's families and mpe2's MPE tasks, found without importing.

    The tasks' modules are imported only when one is built: many need extra packages
    (``chess``, ``rlcard``, the Atari ROMs) that a user of other families does not install.
    """
    found: dict[str, str] = {}
    packages = [(family, f"pettingzoo.{family}") for family in _FAMILIES] + [("mpe", "mpe2")]
    for family, package in packages:
        try:
            spec = importlib.util.find_spec(package)
        except ImportError:
            spec = None
        if spec is None or spec.submodule_search_locations is None:
            continue
        for module in pkgutil.iter_modules(spec.submodule_search_locations):
            if not module.ispkg and _TASK_NAME.match(module.name):
                found[f"{family}/{module.name}"] = f"{package}.{module.name}"
    return found


def _resolve_task(task: str) -> tuple[str, Any]:
    """The canonical ``family/task`` name and the imported module of ``task`` (``family/task`` or ``task``)."""
    modules = _task_modules()
    name = task if task in modules else next((key for key in modules if key.split("/", 1)[1] == task), None)
    if name is None:
        short = sorted({key.split("/", 1)[1] for key in modules})
        close = difflib.get_close_matches(task.split("/")[-1], short, n=3, cutoff=0.6)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"PettingZooEnv: unknown task {task!r}.{hint} Available tasks (PettingZooEnv.available_envs): "
            f"{sorted(modules)}. The MPE tasks (simple_spread_v3, ...) come from the mpe2 package."
        )
    try:
        with warnings.catch_warnings():  # pettingzoo >= 1.27 warns on importing a task module: we chose the module
            warnings.filterwarnings("ignore", message="The old environment creation API", category=DeprecationWarning)
            return name, importlib.import_module(modules[name])
    except ImportError as err:
        family = name.split("/", 1)[0]
        extra = "mpe2" if family == "mpe" else f'"pettingzoo[{family}]"'
        raise ImportError(
            f"PettingZooEnv: task {name!r} could not be imported ({err}). Its family needs extra packages: "
            f"pip install {extra}."
        ) from err


class PettingZooWrapper(EnvBase):
    """Wrap a PettingZoo ``ParallelEnv`` or ``AECEnv`` as a tdrl env with agent groups.

    Args:
        env: the PettingZoo env (``task.parallel_env(...)`` or ``task.env(...)``).
        return_state: add the env's global ``state()`` under ``"state"``.
        group_map: how agents are grouped: a dict ``{group: [agent, ...]}``, a premade map such as
            ``MarlGroupMapType.ONE_GROUP_PER_AGENT``, or None for the default (see the module doc).
        use_mask: write each group's ``"mask"`` (bool ``[n_agents]``): which agents act next (AEC)
            or are alive (parallel). Required for AEC envs, and for parallel envs whose agents
            can leave before the episode ends.
        categorical_actions: discrete actions as indices (``Categorical``) rather than one-hot.
        seed: the seed of the first reset (done at construction, as TorchRL does).
        done_on_any: the root done flags are ``any`` (True) or ``all`` (False) of the agents';
            None means ``any`` for parallel envs and ``all`` for AEC envs.
        **kwargs: ``device`` (where tensors live) and ``batch_size`` (must be empty), as in TorchRL.

    Raises:
        ImportError: when pettingzoo is not installed.
        TypeError: for an env that is neither a ``ParallelEnv`` nor an ``AECEnv``, or an unknown argument.
        ValueError: for an AEC env without ``use_mask``, a bad ``group_map``, a non-empty
            ``batch_size``, or agents of one group whose spaces differ.

    Examples:
        >>> from mpe2 import simple_spread_v3
        >>> env = PettingZooWrapper(simple_spread_v3.parallel_env(N=2), seed=0)
        >>> env.group_map
        {'agent': ['agent_0', 'agent_1']}
        >>> env.full_action_spec["agent", "action"]
        Categorical(shape=(2,), dtype=torch.int64, device=cpu, n=5)
        >>> rollout = env.rollout(4)
        >>> rollout["next", "agent", "reward"].shape, rollout["next", "done"].shape
        (torch.Size([4, 2, 1]), torch.Size([4, 1]))
    """

    def __init__(
        self,
        env: Any = None,
        return_state: bool = False,
        group_map: Any = None,
        use_mask: bool = False,
        categorical_actions: bool = True,
        seed: int | None = None,
        done_on_any: bool | None = None,
        **kwargs: Any,
    ) -> None:
        cls = type(self).__name__
        device = kwargs.pop("device", None)
        batch_size = kwargs.pop("batch_size", None)
        if kwargs:
            raise TypeError(f"{cls} got unexpected arguments {sorted(kwargs)} (accepted besides its own: device).")
        if batch_size is not None and len(torch.Size(batch_size)):
            raise ValueError(f"{cls}: a PettingZoo env has no batch dims; got batch_size={tuple(batch_size)}.")
        pettingzoo = _import_pettingzoo(cls)
        super().__init__(device=device, batch_size=())
        if not isinstance(env, (pettingzoo.utils.env.ParallelEnv, pettingzoo.utils.env.AECEnv)):
            raise TypeError(
                f"{cls}: env must be a pettingzoo ParallelEnv or AECEnv (e.g. simple_spread_v3.parallel_env() "
                f"or tictactoe_v3.env()), got {type(env).__name__}."
            )
        self.parallel = isinstance(env, pettingzoo.utils.env.ParallelEnv)
        if not self.parallel and not use_mask:
            raise ValueError(_AEC_NEEDS_MASK.format(cls=cls, env=type(env).__name__))
        self._env = env
        self.return_state = return_state
        self.use_mask = use_mask
        self.categorical_actions = categorical_actions
        self.seed = seed
        self.done_on_any = self.parallel if done_on_any is None else bool(done_on_any)
        self.possible_agents: list[str] = list(env.possible_agents)
        self.group_map = _check_group_map(
            _default_group_map(self.possible_agents, self.parallel) if group_map is None else group_map,
            self.possible_agents,
            cls,
        )
        self._groups = [_Group(name, agents) for name, agents in self.group_map.items()]
        observations, infos = self._reset_backend(seed=seed)
        self._build_specs(infos)
        self._write_masks(observations, infos)  # the action specs' masks, for rand_action before reset

    @property
    def env(self) -> Any:
        """The wrapped PettingZoo env."""
        return self._env

    @property
    def agents(self) -> list[str]:
        """The agents live now (PettingZoo's ``env.agents``)."""
        return list(self._env.agents)

    @property
    def agent_selection(self) -> str:
        """The agent that acts next in an AEC env."""
        return self._env.agent_selection

    @ClassProperty
    def available_envs(cls) -> list[str]:
        """The task names ``PettingZooEnv`` accepts (``"family/task_vN"``; the bare ``"task_vN"`` works too)."""
        if importlib.util.find_spec("pettingzoo") is None:
            return []
        return sorted(_task_modules())

    # --- construction -----------------------------------------------------------------------
    def _uneven(self, group: _Group, what: str, key: tuple[str, ...]) -> Callable[[list], str]:
        return lambda specs: _UNEVEN_GROUP.format(
            cls=type(self).__name__, group=group.name, agents=group.agents, what=what, key=key, specs=specs
        )

    def _build_specs(self, infos: Mapping) -> None:
        dev = self.device
        flag = Categorical(2, shape=(1,), dtype=torch.bool, device=dev)
        action_spec, observation_spec, reward_spec = Composite(), Composite(), Composite()
        done_spec = Composite({key: flag.clone() for key in ("done", "terminated", "truncated")})
        for group in self._groups:
            n = len(group.agents)
            actions = [
                space_to_spec(self._env.action_space(a), (), self.categorical_actions, dev) for a in group.agents
            ]
            observations = [space_to_spec(self._env.observation_space(a), (), False, dev) for a in group.agents]
            action = _stack_leaves(cast(list[TensorSpec], actions), self._uneven(group, "action", ("action",)))
            action_spec[group.name] = Composite({"action": action}, shape=(n,))
            group_obs = Composite(shape=(n,))
            if isinstance(observations[0], Composite) and "action_mask" in observations[0]:
                group.action_mask = "observation"
                observations = [cast(Composite, spec).exclude("action_mask") for spec in observations]
            for path in _leaf_paths(observations[0]):
                key = ("observation", *path)
                leaves = [_at(spec, path) for spec in observations]
                group_obs[key] = _stack_leaves(leaves, self._uneven(group, "observation", key))
                group.observation.append(_Field(key, path, cast(TensorSpec, group_obs[key])))
            info = infos.get(group.agents[0], {}) if isinstance(infos, Mapping) else {}
            if group.action_mask is None and "action_mask" in info:
                group.action_mask = "info"
            for name, value in info.items():
                array = np.asarray(value)
                if name == "action_mask" or array.dtype.kind not in "biuf":
                    continue  # the action mask has its own entry; strings and objects are not tensors
                key = ("info", str(name))
                group_obs[key] = Unbounded(shape=(n, *array.shape), device=dev)
                group.info.append(_Field(key, (str(name),), cast(TensorSpec, group_obs[key])))
            if group.action_mask is not None:
                n_actions = cast(Categorical | OneHot, action).space.n
                one_hot_shape = action.shape if isinstance(action, OneHot) else (*action.shape, n_actions)
                group_obs["action_mask"] = Categorical(2, shape=one_hot_shape, dtype=torch.bool, device=dev)
            if self.use_mask:
                group_obs["mask"] = Categorical(2, shape=(n,), dtype=torch.bool, device=dev)
            observation_spec[group.name] = group_obs
            reward_spec[group.name] = Composite({"reward": Unbounded(shape=(n, 1), device=dev)}, shape=(n,))
            per_agent = Categorical(2, shape=(n, 1), dtype=torch.bool, device=dev)
            done_spec[group.name] = Composite(
                {key: per_agent.clone() for key in ("done", "terminated", "truncated")}, shape=(n,)
            )
        if self.return_state:
            observation_spec["state"] = self._state_spec()
        self.full_action_spec = action_spec
        self.full_observation_spec = observation_spec
        self.full_reward_spec = reward_spec
        self.full_done_spec = done_spec
        for group in self._groups:  # the live leaf, whose mask rand_action reads
            group.action_spec = cast(TensorSpec, self.full_action_spec[group.name, "action"])

    def _state_spec(self) -> TensorSpec:
        space = getattr(self._env, "state_space", None)
        if space is not None:
            return cast(TensorSpec, space_to_spec(space, (), False, self.device))
        try:
            example = torch.as_tensor(np.asarray(self._env.state()))
        except (AttributeError, NotImplementedError) as err:
            raise ValueError(
                f"{type(self).__name__}: return_state=True, but {type(self._env).__name__} has no global "
                f"state ({err}). Build the env with return_state=False."
            ) from err
        return Unbounded(shape=example.shape, dtype=example.dtype, device=self.device)

    # --- PettingZoo calls ---------------------------------------------------------------------
    def _reset_backend(self, seed: int | None = None) -> tuple[Mapping, Mapping]:
        if self.parallel:
            return self._env.reset(seed=seed)
        self._env.reset(seed=seed)
        return {agent: self._env.observe(agent) for agent in self.possible_agents}, self._env.infos

    def _acting(self) -> set[str]:
        return set(self._env.agents) if self.parallel else {self._env.agent_selection}

    def _group_actions(self, tensordict: TensorDictBase) -> dict[str, Any]:
        """``{agent: numpy action}`` for the agents of every group (parallel), from the stacked actions."""
        actions = {}
        for group in self._groups:
            stacked = _to_numpy(cast(TensorSpec, group.action_spec), tensordict.get((group.name, "action")))
            for i, agent in enumerate(group.agents):
                actions[agent] = stacked[i]
        return actions

    def _aec_action(self, tensordict: TensorDictBase) -> Any:
        agent = self._env.agent_selection
        if self._env.terminations.get(agent, False) or self._env.truncations.get(agent, False):
            return None  # PettingZoo takes only None from an agent that has finished
        for group in self._groups:
            if agent in group.index:
                stacked = _to_numpy(cast(TensorSpec, group.action_spec), tensordict.get((group.name, "action")))
                return stacked[group.index[agent]]
        raise KeyError(f"{type(self).__name__}: agent {agent!r} of the env is in no group of {self.group_map}.")

    # --- conversions -------------------------------------------------------------------------
    def _write_masks(self, observations: Mapping, infos: Mapping) -> dict[str, torch.Tensor]:
        """Each group's action mask (all True for agents not acting), also set on its action spec."""
        masks: dict[str, torch.Tensor] = {}
        if all(group.action_mask is None for group in self._groups):
            return masks
        acting = self._acting()
        for group in self._groups:
            if group.action_mask is None:
                continue
            source = observations if group.action_mask == "observation" else infos
            spec = cast(Categorical | OneHot, group.action_spec)
            mask = torch.ones((len(group.agents), spec.space.n), dtype=torch.bool)
            for i, agent in enumerate(group.agents):
                data = source.get(agent) if isinstance(source, Mapping) else None
                if agent in acting and isinstance(data, Mapping) and "action_mask" in data:
                    mask[i] = torch.as_tensor(np.asarray(data["action_mask"], dtype=bool))
            mask = mask.to(self.device)
            spec.update_mask(mask.clone())
            masks[group.name] = mask
        return masks

    def _fill(self, fields: list[_Field], group: _Group, source: Mapping, out: dict) -> None:
        if not fields:
            return
        data = (
            [source.get(agent) for agent in group.agents] if isinstance(source, Mapping) else [None] * len(group.agents)
        )
        on_cpu = self.device.type == "cpu"
        for field in fields:
            path, zero = field.path, field.zero
            if path:
                rows = [zero if d is None else _read(d, path) for d in data]
            else:
                rows = [zero if d is None else d for d in data]
            value = torch.from_numpy(np.stack(rows).astype(zero.dtype, copy=False))
            out[field.key if len(field.key) > 1 else field.key[0]] = value if on_cpu else value.to(self.device)

    def _td(self, entries: dict, batch_size: tuple) -> TensorDictBase:
        if any(isinstance(key, tuple) for key in entries):  # a dict observation: nested entries
            return TensorDict(entries, batch_size=batch_size, device=self.device)
        return td_unchecked(entries, torch.Size(batch_size), self.device)

    def _outputs(
        self,
        observations: Mapping,
        infos: Mapping,
        rewards: Mapping | None = None,
        terminations: Mapping | None = None,
        truncations: Mapping | None = None,
    ) -> TensorDictBase:
        """The TensorDict of a reset (no rewards) or a step, from PettingZoo's per-agent dicts."""
        masks = self._write_masks(observations, infos)
        acting = self._acting() if self.use_mask else set()
        on_cpu = self.device.type == "cpu"
        live_now = self._env.agents if rewards is not None else ()
        source: dict[str, Any] = {}
        done_any = terminated_any = truncated_any = False
        done_all = terminated_all = truncated_all = True
        for group in self._groups:
            n = len(group.agents)
            entries: dict[Any, Any] = {}
            self._fill(group.observation, group, observations, entries)
            self._fill(group.info, group, infos, entries)
            if group.name in masks:
                entries["action_mask"] = masks[group.name]
            if self.use_mask:
                entries["mask"] = torch.tensor([agent in acting for agent in group.agents], device=self.device)
            flags = np.zeros((3, n, 1), dtype=bool)  # terminated, truncated, done
            if rewards is not None:
                terminations = cast(Mapping, terminations)
                truncations = cast(Mapping, truncations)
                reward = np.zeros((n, 1), dtype=np.float32)
                everyone = all(agent in observations for agent in group.agents)
                if everyone:  # every agent of the group is live (the common case): one pass per entry
                    reward[:, 0] = [rewards.get(agent, 0.0) for agent in group.agents]
                    flags[0, :, 0] = [terminations.get(agent, False) for agent in group.agents]
                    flags[1, :, 0] = [truncations.get(agent, False) for agent in group.agents]
                for i, agent in enumerate(() if everyone else group.agents):
                    if agent in observations:  # a live agent
                        reward[i, 0] = rewards.get(agent, 0.0)
                        flags[0, i, 0] = terminations.get(agent, False)
                        flags[1, i, 0] = truncations.get(agent, False)
                    elif not self.use_mask or agent in live_now:
                        raise ValueError(
                            _DEAD_AGENT.format(cls=type(self).__name__, agent=agent, live=sorted(live_now))
                        )
                    else:  # gone: done, with the flags PettingZoo last gave it (else both set, as TorchRL)
                        flags[0, i, 0] = terminations.get(agent, True)
                        flags[1, i, 0] = truncations.get(agent, True)
                flags[2] = flags[0] | flags[1]
                entries["reward"] = torch.from_numpy(reward) if on_cpu else torch.from_numpy(reward).to(self.device)
                anys = cast(list, flags.any(axis=(1, 2)).tolist())
                alls = cast(list, flags.all(axis=(1, 2)).tolist())
                terminated_any, truncated_any, done_any = (
                    terminated_any or anys[0],
                    truncated_any or anys[1],
                    done_any or anys[2],
                )
                terminated_all, truncated_all, done_all = (
                    terminated_all and alls[0],
                    truncated_all and alls[1],
                    done_all and alls[2],
                )
            tensors = torch.from_numpy(flags) if on_cpu else torch.from_numpy(flags).to(self.device)
            entries["terminated"], entries["truncated"], entries["done"] = tensors.unbind(0)
            source[group.name] = self._td(entries, (n,))
        if rewards is None:
            root = (False, False, False)
        elif self.done_on_any:
            root = (done_any, terminated_any, truncated_any)
        else:
            root = (done_all, terminated_all, truncated_all)
        root_flags = torch.from_numpy(np.array(root, dtype=bool).reshape(3, 1))
        source["done"], source["terminated"], source["truncated"] = (
            root_flags if on_cpu else root_flags.to(self.device)
        ).unbind(0)
        if self.return_state:
            state_spec = cast(TensorSpec, self.full_observation_spec["state"])
            source["state"] = state_spec.encode(np.asarray(self._env.state()))
        return td_unchecked(source, torch.Size(()), self.device)

    # --- EnvBase --------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        self.seed = seed
        self.reset(seed=seed)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        observations, infos = self._reset_backend(**kwargs)
        return self._outputs(observations, infos)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        env = self._env
        if not env.agents:
            raise RuntimeError(_EPISODE_OVER.format(cls=type(self).__name__))
        if self.parallel:
            observations, rewards, terminations, truncations, infos = env.step(self._group_actions(tensordict))
        else:
            env.step(self._aec_action(tensordict))
            observations = {agent: env.observe(agent) for agent in self.possible_agents}
            rewards, terminations, truncations, infos = env.rewards, env.terminations, env.truncations, env.infos
        return self._outputs(observations, infos, rewards, terminations, truncations)

    def _rollout_fast(self, td: TensorDictBase, max_steps: int, break_when_any_done: bool) -> TensorDictBase | None:
        return fast_rollout(self, td, max_steps, break_when_any_done)

    def close(self) -> None:
        super().close()
        env = getattr(self, "_env", None)
        if env is not None and hasattr(env, "close"):
            env.close()

    def __repr__(self) -> str:
        kind = "parallel" if self.parallel else "AEC"
        return f"{type(self).__name__}({type(self._env).__name__}, {kind}, group_map={self.group_map})"


class PettingZooEnv(PettingZooWrapper):
    """Build a PettingZoo task by name and wrap it (see :class:`PettingZooWrapper`).

    Args:
        task: the task, ``"family/task_vN"`` or ``"task_vN"`` (e.g. ``"classic/tictactoe_v3"``,
            ``"simple_spread_v3"``); :attr:`available_envs` lists them. The MPE tasks come from
            the ``mpe2`` package.
        parallel: build the task's ``parallel_env`` (True) or its AEC ``env`` (False).
        return_state: add the global ``"state"``.
        group_map: how agents are grouped (dict, premade map or None for the default).
        use_mask: write each group's ``"mask"`` (required for AEC envs).
        categorical_actions: discrete actions as indices rather than one-hot.
        seed: the seed of the first reset.
        done_on_any: aggregate the agents' done flags with ``any`` (True) or ``all`` (False).
        **kwargs: ``device``, and the task's own arguments (e.g. ``N=2``, ``max_cycles=50``,
            ``continuous_actions=True`` for MPE).

    Raises:
        ValueError: for an unknown task (listing close names and the available ones).
        ImportError: when pettingzoo, or a package the task's family needs, is missing.

    Examples:
        >>> env = PettingZooEnv("simple_tag_v3", parallel=True, continuous_actions=True, seed=0)
        >>> env.group_map
        {'adversary': ['adversary_0', 'adversary_1', 'adversary_2'], 'agent': ['agent_0']}
        >>> env.full_action_spec["adversary", "action"].shape
        torch.Size([3, 5])
        >>> PettingZooEnv("simple_spred_v3", parallel=True)
        Traceback (most recent call last):
        ...
        ValueError: PettingZooEnv: unknown task 'simple_spred_v3'. Did you mean ['simple_spread_v3', ...
    """

    def __init__(
        self,
        task: str,
        parallel: bool,
        return_state: bool = False,
        group_map: Any = None,
        use_mask: bool = False,
        categorical_actions: bool = True,
        seed: int | None = None,
        done_on_any: bool | None = None,
        **kwargs: Any,
    ) -> None:
        _import_pettingzoo(type(self).__name__)
        device = kwargs.pop("device", None)
        name, module = _resolve_task(task)
        env = module.parallel_env(**kwargs) if parallel else module.env(**kwargs)
        super().__init__(
            env,
            return_state=return_state,
            group_map=group_map,
            use_mask=use_mask,
            categorical_actions=categorical_actions,
            seed=seed,
            done_on_any=done_on_any,
            device=device,
        )
        self.task_name = name

    def __repr__(self) -> str:
        kind = "parallel" if self.parallel else "AEC"
        return f"PettingZooEnv(task={self.task_name!r}, {kind}, group_map={self.group_map})"
