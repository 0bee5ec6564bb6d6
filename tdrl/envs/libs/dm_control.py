"""DeepMind Control Suite backend: ``DMControlEnv(domain, task)`` and ``DMControlWrapper(env)``.

dm_env specs become tdrl specs: ``BoundedArray`` -> ``Bounded``, ``DiscreteArray`` ->
``Categorical``, ``Array`` -> ``Unbounded``, (nested) dicts -> (nested) keys; scalar
entries get shape ``[1]``. Observations keep their names and dtype (float64 for MuJoCo,
so ``DoubleToFloat`` has a job), or are concatenated into one ``"observation"`` vector with
``concat_observations=True``: then a policy written for ``GymEnv`` reads them unchanged.
Actions are float32, like gymnasium's ``Box`` actions, and are cast to dm_control's dtype.

dm_env signals the end of an episode with ``StepType.LAST`` and a discount: a LAST step
with discount 0 ends in a terminal state (``terminated``); with a positive discount the
episode was cut short, e.g. by dm_control's time limit (``truncated``), and a value
estimator should bootstrap. The discount itself is not written out (as in TorchRL): it is
read into ``terminated``/``truncated``, so ``observation_spec`` holds only the task's
observations and e.g. ``CatTensors(list(env.observation_spec.keys()), "observation")`` works.

Rendering pixels uses MuJoCo's offscreen renderer: on a machine without a display, set
``MUJOCO_GL=egl`` (or ``MUJOCO_GL=osmesa``) before dm_control is imported.

Examples:
    >>> env = DMControlEnv("cartpole", "swingup")
    >>> sorted(env.observation_spec.keys())
    ['position', 'velocity']
    >>> env.set_seed(0)
    1
    >>> env.rollout(3)["next", "position"].shape
    torch.Size([3, 3])
    >>> DMControlEnv("cartpole", "swingup", concat_observations=True).observation_spec["observation"].shape
    torch.Size([5])
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.envs.common import EnvBase
from tdrl.envs.libs._class_property import ClassProperty
from tdrl.envs.libs._gym_convert import _torch_dtype
from tdrl.envs.libs._render import note_gl_failure, refuse_after_gl_failure, render_error
from tdrl.specs import Bounded, Categorical, Composite, TensorSpec, Unbounded

__all__ = ["DMControlEnv", "DMControlWrapper", "dm_spec_to_spec"]

_MISSING = (
    "{what} needs dm_control, an optional dependency of tdrl. Install it with "
    '`pip install "tdrl[dm_control]"` (it brings dm_control and a compatible mujoco).'
)
_RESERVED = ("pixels", "reward", "done", "terminated", "truncated", "action")
_RENDER_HINT = (
    "Rendering needs an OpenGL backend: on a machine without a display set MUJOCO_GL=egl "
    "(or MUJOCO_GL=osmesa) in the environment before dm_control is imported."
)


def _import_suite(what: str = "DMControlEnv") -> Any:
    """dm_control's suite module, or an ImportError naming the extra to install."""
    try:
        from dm_control import suite
    except ImportError as err:
        raise ImportError(_MISSING.format(what=what)) from err
    return suite


def _import_dm_env(what: str) -> Any:
    try:
        import dm_env
    except ImportError as err:
        raise ImportError(_MISSING.format(what=what)) from err
    return dm_env


def dm_spec_to_spec(spec: Any, device: Any = None, dtype: torch.dtype | None = None) -> TensorSpec | Composite:
    """Translate a dm_env spec (or a dict of them) into a tdrl spec.

    Args:
        spec: a ``dm_env.specs.Array`` / ``BoundedArray`` / ``DiscreteArray`` or a (nested)
            mapping of them.
        device: where the spec's tensors live.
        dtype: force this dtype (e.g. float32 actions); default: the dm spec's dtype.

    Returns:
        A leaf spec, or a ``Composite`` for a mapping. Scalar arrays get shape ``[1]``
        (like rewards); a scalar ``DiscreteArray`` stays a scalar index (int64).

    Raises:
        TypeError: for a spec type tdrl does not know (e.g. ``StringArray``).

    Examples:
        >>> from dm_env import specs
        >>> dm_spec_to_spec(specs.BoundedArray((2,), np.float64, -1.0, 1.0))
        Bounded(shape=(2,), dtype=torch.float64, device=cpu, low=-1.0, high=1.0)
        >>> dm_spec_to_spec(specs.DiscreteArray(4))
        Categorical(shape=(), dtype=torch.int64, device=cpu, n=4)
    """
    specs = _import_dm_env("dm_spec_to_spec").specs
    if isinstance(spec, Mapping):
        return Composite({key: dm_spec_to_spec(value, device, dtype) for key, value in spec.items()})
    if isinstance(spec, specs.StringArray) or not isinstance(spec, specs.Array):
        raise TypeError(
            f"dm_spec_to_spec: {type(spec).__name__} is not supported "
            f"(supported: dm_env.specs.Array, BoundedArray, DiscreteArray and dicts of them)."
        )
    if isinstance(spec, specs.DiscreteArray):
        # an index, as gymnasium's Discrete with categorical_action_encoding: int64, no extra dim
        return Categorical(int(spec.num_values), shape=tuple(spec.shape), device=device, dtype=dtype or torch.int64)
    shape = tuple(spec.shape) or (1,)
    dtype = dtype or _torch_dtype(spec.dtype)
    if isinstance(spec, specs.BoundedArray):
        low = torch.from_numpy(np.array(np.broadcast_to(spec.minimum, spec.shape))).reshape(shape)
        high = torch.from_numpy(np.array(np.broadcast_to(spec.maximum, spec.shape))).reshape(shape)
        if torch.isfinite(low).all() and torch.isfinite(high).all():
            return Bounded(low.to(dtype), high.to(dtype), shape=shape, device=device, dtype=dtype)
    return Unbounded(shape=shape, device=device, dtype=dtype)


def _flat_items(tree: Mapping, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.extend(_flat_items(value, (*prefix, key)))
        else:
            out.append(((*prefix, key), value))
    return out


class DMControlWrapper(EnvBase):
    """Wrap a dm_env environment (e.g. from ``dm_control.suite.load``) as a tdrl env.

    Args:
        env: a ``dm_env.Environment``; pixels need a dm_control env (it has ``physics``).
        from_pixels: add a ``"pixels"`` entry (uint8 ``[H, W, 3]``) rendered each step.
        pixels_only: with ``from_pixels``, drop the state observations.
        concat_observations: concatenate the (flattened) observation entries, in the
            env's order, into one ``"observation"`` vector (dtypes are promoted).
        render_kwargs: passed to ``physics.render``; default
            ``{"height": 84, "width": 84, "camera_id": 0}``.
        frame_skip: repeat each action this many times, summing rewards.
        device: where the output tensors live (the simulator runs on CPU).

    Raises:
        ValueError: for ``frame_skip < 1``, ``pixels_only`` without ``from_pixels``, or an
            observation named like an entry tdrl writes itself.
        RuntimeError: when pixels are asked for and rendering fails.

    Examples:
        >>> from dm_control import suite
        >>> env = DMControlWrapper(suite.load("cartpole", "balance"), concat_observations=True)
        >>> env.action_spec
        Bounded(shape=(1,), dtype=torch.float32, device=cpu, low=-1.0, high=1.0)
        >>> env.reset()["observation"].dtype
        torch.float64
        >>> DMControlWrapper.available_envs[0]
        ('acrobot', ['swingup', 'swingup_sparse'])
    """

    @ClassProperty
    def available_envs(cls) -> list[tuple[str, list[str]]]:
        """The suite's ``(domain, [tasks])`` pairs, benchmarking tasks first (``[]`` without dm_control)."""
        try:
            suite = _import_suite()
        except ImportError:
            return []
        by_domain: dict[str, list[str]] = {}
        for domain, task in (*suite.BENCHMARKING, *suite.EXTRA):
            by_domain.setdefault(domain, []).append(task)
        return list(by_domain.items())

    def __init__(
        self,
        env: Any,
        from_pixels: bool = False,
        pixels_only: bool = False,
        concat_observations: bool = False,
        render_kwargs: dict | None = None,
        frame_skip: int = 1,
        device: Any = None,
    ) -> None:
        super().__init__(device=device, batch_size=())
        if frame_skip < 1:
            raise ValueError(f"{type(self).__name__}: frame_skip must be >= 1, got {frame_skip}.")
        if pixels_only and not from_pixels:
            raise ValueError(f"{type(self).__name__}: pixels_only=True needs from_pixels=True.")
        self._env = env
        self.from_pixels = from_pixels
        self.pixels_only = pixels_only
        self.concat_observations = concat_observations
        self.render_kwargs = {"height": 84, "width": 84, "camera_id": 0, **(render_kwargs or {})}
        self.frame_skip = frame_skip
        self._build_specs()

    @property
    def env(self) -> Any:
        """The wrapped dm_env environment."""
        return self._env

    # --- construction ---------------------------------------------------------------------
    def _build_specs(self) -> None:
        dev = self.device
        dm_obs = self._env.observation_spec()
        if not isinstance(dm_obs, Mapping):
            dm_obs = {"observation": dm_obs}
            self._single_obs = True
        else:
            self._single_obs = False
        self._obs_leaves = [key for key, _ in _flat_items(dm_obs)]
        clash = [key for key in self._obs_leaves if key[0] in _RESERVED]
        if clash and not (self.concat_observations or self.pixels_only):
            raise ValueError(
                f"{type(self).__name__}: observation entries {clash} are named like entries tdrl writes "
                f"itself {list(_RESERVED)}. Use concat_observations=True to read them as one 'observation'."
            )
        obs_spec = Composite()
        if not self.pixels_only:
            # _flat_items yields the array specs, which translate to leaf specs
            leaf_specs = {key: cast(TensorSpec, dm_spec_to_spec(value, dev)) for key, value in _flat_items(dm_obs)}
            if self.concat_observations:
                dtype = leaf_specs[self._obs_leaves[0]].dtype
                for spec in leaf_specs.values():
                    dtype = torch.promote_types(dtype, spec.dtype)
                size = sum(int(np.prod(s.shape)) for s in leaf_specs.values())
                self._cat_dtype = np.dtype(str(dtype).replace("torch.", ""))
                obs_spec["observation"] = Unbounded(shape=(size,), dtype=dtype, device=dev)
            else:
                for key, spec in leaf_specs.items():
                    obs_spec[key] = spec
        if self.from_pixels:
            frame = self._render()
            obs_spec["pixels"] = Bounded(0, 255, shape=frame.shape, dtype=torch.uint8, device=dev)
        self.observation_spec = obs_spec
        dm_act = self._env.action_spec()
        if isinstance(dm_act, Mapping):
            raise TypeError(
                f"{type(self).__name__}: dict action specs are not supported (got keys {list(dm_act)}); "
                f"wrap the env so that it takes one action array."
            )
        self._act_shape = tuple(dm_act.shape)
        self._act_dtype = np.dtype(dm_act.dtype)
        float_action = np.issubdtype(self._act_dtype, np.floating)
        self.action_spec = dm_spec_to_spec(dm_act, dev, dtype=torch.float32 if float_action else None)
        self.reward_spec = Unbounded(shape=(1,), device=dev)

    def render(self, **kwargs: Any) -> np.ndarray:
        """The current frame, ``uint8 [H, W, 3]``, from ``physics.render``.

        Args:
            **kwargs: override ``render_kwargs`` (``height``, ``width``, ``camera_id``) for this call.

        Raises:
            ValueError: when the wrapped env has no ``physics``.
            RuntimeError: when rendering fails (naming ``MUJOCO_GL`` when no OpenGL backend works).
        """
        physics = getattr(self._env, "physics", None)
        if physics is None:
            raise ValueError(
                f"{type(self).__name__}: rendering needs a dm_control env with a `physics` "
                f"attribute; {type(self._env).__name__} has none."
            )
        refuse_after_gl_failure(type(self).__name__)
        try:
            return physics.render(**{**self.render_kwargs, **kwargs})
        except Exception as err:
            note_gl_failure(err)
            clear = render_error(err, type(self).__name__)
            if clear is not err:
                raise clear from err
            raise RuntimeError(f"{type(self).__name__}: rendering pixels failed ({err}). {_RENDER_HINT}") from err

    def _render(self) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.render()))

    # --- conversions ----------------------------------------------------------------------
    def _observation(self, observation: Any) -> dict:
        out: dict = {}
        if not self.pixels_only:
            tree = {"observation": observation} if self._single_obs else observation
            if self.concat_observations:
                parts = [np.asarray(value, dtype=self._cat_dtype).ravel() for _, value in _flat_items(tree)]
                out["observation"] = torch.from_numpy(np.concatenate(parts))
            else:
                for key, value in _flat_items(tree):
                    tensor = torch.tensor(np.asarray(value))  # a copy: dm_control may return views of its state
                    out[key if len(key) > 1 else key[0]] = tensor.reshape(1) if tensor.ndim == 0 else tensor
        if self.from_pixels:
            out["pixels"] = self._render()
        return out

    def _to_td(self, source: dict) -> TensorDictBase:
        if any(isinstance(key, tuple) for key in source):
            td = TensorDict(source, batch_size=())
        else:
            td = td_unchecked(source, torch.Size(()))
        return td if self.device.type == "cpu" else td.to(self.device)

    # --- EnvBase --------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        task = getattr(self._env, "task", None)
        random = getattr(task, "random", None)
        if random is None or not hasattr(random, "seed"):
            raise RuntimeError(
                f"{type(self).__name__}.set_seed: {type(self._env).__name__} exposes no task.random to seed; "
                f"seed the dm_env when you build it (e.g. suite.load(..., task_kwargs={{'random': seed}}))."
            )
        random.seed(seed)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        timestep = self._env.reset()
        return self._to_td(self._observation(timestep.observation))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").detach().cpu().numpy().astype(self._act_dtype).reshape(self._act_shape)
        reward = 0.0
        for _ in range(self.frame_skip):
            timestep = self._env.step(action)
            reward += 0.0 if timestep.reward is None else float(timestep.reward)
            if timestep.last():
                break
        discount = 1.0 if timestep.discount is None else float(timestep.discount)
        last = timestep.last()
        source = self._observation(timestep.observation)
        source["reward"] = torch.tensor([reward], dtype=torch.float32)
        source["done"] = torch.tensor([last])
        source["terminated"] = torch.tensor([last and discount == 0.0])
        source["truncated"] = torch.tensor([last and discount > 0.0])
        return self._to_td(source)

    def close(self) -> None:
        super().close()
        env = getattr(self, "_env", None)
        if env is not None and hasattr(env, "close"):
            env.close()


def _check_task(suite: Any, domain: str, task: str) -> None:
    by_domain = suite.TASKS_BY_DOMAIN
    if domain not in by_domain:
        close = difflib.get_close_matches(domain, list(by_domain), n=3, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"DMControlEnv: unknown domain {domain!r}.{hint} Available domains: {sorted(by_domain)} "
            f"(all (domain, task) pairs: dm_control.suite.ALL_TASKS)."
        )
    if task not in by_domain[domain]:
        raise ValueError(f"DMControlEnv: domain {domain!r} has no task {task!r}. Its tasks: {list(by_domain[domain])}.")


class DMControlEnv(DMControlWrapper):
    """Load a DeepMind Control Suite task by name and wrap it.

    Args:
        domain: the suite's domain, e.g. ``"cheetah"`` (``env_name`` is accepted too).
        task: the domain's task, e.g. ``"run"`` (``task_name`` is accepted too).
        from_pixels: add rendered ``"pixels"`` (see :class:`DMControlWrapper`).
        pixels_only: keep only the pixels.
        concat_observations: one ``"observation"`` vector instead of named entries.
        render_kwargs: passed to ``physics.render`` (height, width, camera_id).
        frame_skip: repeat each action this many times.
        device: where output tensors live.
        seed: the task's initial random seed (``set_seed`` reseeds later).
        task_kwargs: passed to the task (e.g. ``{"time_limit": 5}``).
        environment_kwargs: passed to dm_control's ``Environment`` (e.g. ``{"flat_observation": True}``).
        visualize_reward: colour rendered frames by the reward.

    Raises:
        ImportError: when dm_control is not installed (with the extra to install).
        ValueError: for an unknown domain or task (listing the available ones).

    Examples:
        >>> env = DMControlEnv("cheetah", "run", concat_observations=True)
        >>> env.observation_spec["observation"].shape, env.action_spec.shape
        (torch.Size([17]), torch.Size([6]))
        >>> DMControlEnv("cheetah", "walk")
        Traceback (most recent call last):
        ...
        ValueError: DMControlEnv: domain 'cheetah' has no task 'walk'. Its tasks: ['run'].
    """

    def __init__(
        self,
        domain: str | None = None,
        task: str | None = None,
        from_pixels: bool = False,
        pixels_only: bool = False,
        concat_observations: bool = False,
        render_kwargs: dict | None = None,
        frame_skip: int = 1,
        device: Any = None,
        seed: int | None = None,
        task_kwargs: dict | None = None,
        environment_kwargs: dict | None = None,
        visualize_reward: bool = False,
        env_name: str | None = None,
        task_name: str | None = None,
    ) -> None:
        domain = domain if domain is not None else env_name
        task = task if task is not None else task_name
        if domain is None or task is None:
            raise TypeError('DMControlEnv needs a domain and a task, e.g. DMControlEnv("cheetah", "run").')
        suite = _import_suite()
        _check_task(suite, domain, task)
        task_kwargs = dict(task_kwargs or {})
        if seed is not None:
            task_kwargs["random"] = seed
        env = suite.load(
            domain,
            task,
            task_kwargs=task_kwargs,
            environment_kwargs=environment_kwargs,
            visualize_reward=visualize_reward,
        )
        self.domain, self.task = domain, task
        super().__init__(
            env,
            from_pixels=from_pixels,
            pixels_only=pixels_only,
            concat_observations=concat_observations,
            render_kwargs=render_kwargs,
            frame_skip=frame_skip,
            device=device,
        )

    # TorchRL's attribute names
    @property
    def env_name(self) -> str:
        return self.domain

    @property
    def task_name(self) -> str:
        return self.task

    def __repr__(self) -> str:
        return f"DMControlEnv(domain={self.domain!r}, task={self.task!r}, device={self.device})"
