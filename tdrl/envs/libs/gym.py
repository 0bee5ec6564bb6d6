"""Gymnasium backend: ``GymEnv(name)`` and ``GymWrapper(gym_env)``.

Spaces become specs (Box -> Bounded/Unbounded, Discrete -> OneHot or Categorical,
MultiDiscrete -> MultiOneHot or MultiCategorical, MultiBinary -> Binary, Dict and Tuple
-> Composite); observations keep their dtype (float64 for MuJoCo); gymnasium's
``terminated``/``truncated`` become the done keys. ``GymEnv(name, num_envs=N)`` wraps a
gymnasium vector env with batch size ``[N]``; its autoreset is disabled and tdrl resets
the finished sub-envs itself, so no frame of a finished episode leaks into the next.
One env's Discrete action (one-hot or index) reaches gymnasium as a python ``int``, as
TorchRL passes it; other actions as numpy arrays of the action spec's dtype. These
conversions live in ``_gym_convert.py``, the policy-free rollout's loop in ``_gym_rollout.py``.

Examples:
    >>> env = GymEnv("Pendulum-v1")
    >>> env.action_spec
    Bounded(shape=(1,), dtype=torch.float32, device=cpu, low=-2.0, high=2.0)
    >>> env.set_seed(0)
    1
    >>> env.rollout(3)["next", "observation"].shape
    torch.Size([3, 3])
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import td_flat, td_read, td_unchecked
from tdrl.envs.common import EnvBase
from tdrl.envs.libs._class_property import ClassProperty
from tdrl.envs.libs._gym_convert import _AS_ARRAY, _BOOL, _F32, _INDEX, _ONE_HOT, _decode_mode, _gym, _torch_dtype
from tdrl.envs.libs._gym_convert import _TORCH_DTYPES as _TORCH_DTYPES
from tdrl.envs.libs._gym_rollout import _fill_rollout
from tdrl.envs.libs._render import note_gl_failure, refuse_after_gl_failure, render_error
from tdrl.envs.libs.gym_backend import gym_backend, set_gym_backend  # noqa: F401  (TorchRL imports them from here)
from tdrl.specs import (
    Binary,
    Bounded,
    Categorical,
    Composite,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    TensorSpec,
    Unbounded,
)

__all__ = ["GymEnv", "GymWrapper", "space_to_spec"]

_STEP_KEYS = ("observation", "reward", "terminated", "truncated", "done")  # what the lean step writes


def space_to_spec(
    space: Any, batch_size: Sequence[int] = (), categorical_action_encoding: bool = False, device: Any = None
) -> TensorSpec | Composite:
    """Translate a gymnasium space into a tdrl spec with leading dims ``batch_size``.

    Args:
        space: a gymnasium space (Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple).
        batch_size: leading dims (e.g. ``[N]`` for a vector env's single space).
        categorical_action_encoding: Discrete -> ``Categorical`` (an index) instead of
            ``OneHot``; MultiDiscrete -> ``MultiCategorical`` instead of ``MultiOneHot``.
        device: where the spec's tensors live.

    Raises:
        TypeError: for a space type tdrl does not know.

    Examples:
        >>> import gymnasium as gym
        >>> space_to_spec(gym.spaces.Discrete(3), categorical_action_encoding=True)
        Categorical(shape=(), dtype=torch.int64, device=cpu, n=3)
    """
    spaces = _gym().spaces
    b = tuple(batch_size)
    if isinstance(space, spaces.Box):
        dtype = _torch_dtype(space.dtype)
        low = torch.as_tensor(space.low)
        high = torch.as_tensor(space.high)
        shape = (*b, *space.shape)
        if torch.isfinite(low).all() and torch.isfinite(high).all():
            return Bounded(low.expand(shape), high.expand(shape), shape=shape, dtype=dtype, device=device)
        return Unbounded(shape=shape, dtype=dtype, device=device)
    if isinstance(space, spaces.Discrete):
        if categorical_action_encoding:
            return Categorical(int(space.n), shape=b, device=device)
        return OneHot(int(space.n), shape=(*b, int(space.n)), device=device, dtype=torch.int64)
    if isinstance(space, spaces.MultiDiscrete):
        nvec = torch.as_tensor(space.nvec)
        if categorical_action_encoding or nvec.ndim > 1:
            return MultiCategorical(nvec.expand(*b, *nvec.shape), shape=(*b, *nvec.shape), device=device)
        return MultiOneHot(nvec.tolist(), shape=(*b, int(nvec.sum())), device=device, dtype=torch.int64)
    if isinstance(space, spaces.MultiBinary):
        shape = (*b, *np.atleast_1d(space.n))
        return Binary(shape=shape, device=device, dtype=torch.int8)
    if isinstance(space, spaces.Dict):
        return Composite(
            {k: space_to_spec(s, b, categorical_action_encoding, device) for k, s in space.spaces.items()}, shape=b
        )
    if isinstance(space, spaces.Tuple):
        return Composite(
            {str(i): space_to_spec(s, b, categorical_action_encoding, device) for i, s in enumerate(space.spaces)},
            shape=b,
        )
    raise TypeError(
        f"space_to_spec: gymnasium space {type(space).__name__} is not supported "
        f"(supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple)."
    )


class GymWrapper(EnvBase):
    """Wrap an existing gymnasium env (or vector env) as a tdrl env.

    Args:
        env: a ``gymnasium.Env`` or ``gymnasium.vector.VectorEnv``. A vector env must have
            its autoreset disabled (``GymEnv(name, num_envs=N)`` does this for you).
        categorical_action_encoding: discrete actions as indices (``Categorical``) instead
            of one-hot vectors (``OneHot``, TorchRL's default).
        device: where the output tensors live (gymnasium itself always runs on CPU).
        frame_skip: repeat each action this many times, summing rewards.
        from_pixels: add a ``"pixels"`` entry (uint8 ``[H, W, 3]``) rendered each step;
            the env must have been made with ``render_mode="rgb_array"``.
        pixels_only: with ``from_pixels``, drop the state observation.
        info_keys: entries of gymnasium's ``info`` dict to copy into the output (e.g.
            ``["x_position"]``); their specs are read off a probe step at construction.

    Examples:
        >>> import gymnasium as gym
        >>> env = GymWrapper(gym.make("CartPole-v1"), categorical_action_encoding=True)
        >>> env.action_spec
        Categorical(shape=(), dtype=torch.int64, device=cpu, n=2)
        >>> "CartPole-v1" in GymWrapper.available_envs
        True
    """

    @ClassProperty
    def available_envs(cls) -> list[str]:
        """Every id registered with gymnasium, sorted (``[]`` without gymnasium), as TorchRL lists them."""
        try:
            gym = _gym()
        except ImportError:
            return []
        return sorted(gym.envs.registry.keys())

    def __init__(
        self,
        env: Any,
        categorical_action_encoding: bool = False,
        device: Any = None,
        frame_skip: int = 1,
        from_pixels: bool = False,
        pixels_only: bool = False,
        info_keys: Sequence[str] | None = None,
    ) -> None:
        gym = _gym()
        self._env = env
        self.is_vector = isinstance(env, gym.vector.VectorEnv)
        batch_size = (env.num_envs,) if self.is_vector else ()
        super().__init__(device=device, batch_size=batch_size)
        if frame_skip < 1:
            raise ValueError(f"GymWrapper: frame_skip must be >= 1, got {frame_skip}.")
        if pixels_only and not from_pixels:
            raise ValueError("GymWrapper: pixels_only=True needs from_pixels=True.")
        if from_pixels and getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(
                f"GymWrapper(from_pixels=True) needs an env made with render_mode='rgb_array', got "
                f"{getattr(env, 'render_mode', None)!r}. Use GymEnv(name, from_pixels=True) or "
                f"gym.make(name, render_mode='rgb_array')."
            )
        if self.is_vector:
            mode = env.metadata.get("autoreset_mode", None)
            if mode is not None and getattr(mode, "name", str(mode)) != "DISABLED":
                raise ValueError(
                    f"GymWrapper: the vector env's autoreset_mode is {mode}; tdrl resets finished sub-envs "
                    f"itself and needs it DISABLED. Build it with GymEnv(name, num_envs=N) or "
                    f"gym.make_vec(..., vector_kwargs={{'autoreset_mode': gym.vector.AutoresetMode.DISABLED}})."
                )
        self.frame_skip = frame_skip
        self.from_pixels = from_pixels
        self.pixels_only = pixels_only
        self.categorical_action_encoding = categorical_action_encoding
        self.info_keys = list(info_keys or [])
        self._seed: int | None = None
        self._build_specs()

    def set_info_dict_reader(self, info_dict_reader: Any = None, ignore_private: bool = True) -> GymWrapper:
        """Copy the ``info`` entries a :class:`~tdrl.envs.default_info_dict_reader` names into each output.

        The specs of those entries are read off a probe step (as with ``info_keys``), or
        taken from the reader's ``spec`` when it has one. Call it before wrapping the env
        in transforms. Returns the env.

        Args:
            info_dict_reader: the reader (default: one reading every public ``info`` entry).
            ignore_private: for the default reader, leave out entries starting with ``_``.
        """
        from tdrl.envs.gym_like import default_info_dict_reader

        reader = (
            info_dict_reader if info_dict_reader is not None else default_info_dict_reader(None, None, ignore_private)
        )
        keys = reader.keys
        if keys is None:
            self._env.reset()
            keys = reader.select_keys(self._env.step(self._env.action_space.sample())[4])
        self.info_keys = list(dict.fromkeys([*self.info_keys, *keys]))
        self._build_specs()
        if reader.info_spec is not None:
            for key in keys:
                if key in reader.info_spec.keys():
                    given = reader.info_spec[key]
                    self.observation_spec[key] = given.to(self.device)
        return self

    # --- construction ---------------------------------------------------------------------
    @property
    def env(self) -> Any:
        """The wrapped gymnasium env."""
        return self._env

    def _build_specs(self) -> None:
        env, b = self._env, self.batch_size
        obs_space = env.single_observation_space if self.is_vector else env.observation_space
        act_space = env.single_action_space if self.is_vector else env.action_space
        obs = space_to_spec(obs_space, b, categorical_action_encoding=True, device=self.device)
        obs_spec = obs if isinstance(obs, Composite) else Composite(observation=obs, shape=b)
        self._obs_is_dict = isinstance(obs, Composite)
        if self.pixels_only:
            obs_spec = Composite(shape=b)
        self.observation_spec = obs_spec
        if self.from_pixels:
            self._env.reset()  # gymnasium renders only after a reset
            frame = self._render()
            self.observation_spec["pixels"] = Bounded(0, 255, shape=frame.shape, dtype=torch.uint8, device=self.device)
        self.action_spec = space_to_spec(act_space, b, self.categorical_action_encoding, device=self.device)
        self.reward_spec = Unbounded(shape=(*b, 1), device=self.device)
        self._action_leaf = self.action_spec if isinstance(self.action_spec, TensorSpec) else None
        # the common case (one env, one array observation, CPU, no extras) steps without per-step dispatch
        self._lean = (
            not self.is_vector
            and not self.from_pixels
            and not self.info_keys
            and not self._obs_is_dict
            and self.frame_skip == 1
            and self.device.type == "cpu"
            and self._action_leaf is not None
            and not isinstance(self._action_leaf, MultiOneHot)
        )
        # how the lean step hands the action to gymnasium, decided once (see _step_lean)
        self._lean_decode = _decode_mode(self._action_leaf, self.is_vector)
        if self.info_keys:
            self._probe_info()

    def _probe_info(self) -> None:
        env = self._env
        env.reset()
        _, _, _, _, info = env.step(env.action_space.sample())
        missing = [k for k in self.info_keys if k not in info]
        if missing:
            raise KeyError(
                f"GymWrapper: info_keys {missing} are not in the env's info dict, which has keys {sorted(info)}."
            )
        for key in self.info_keys:
            value = torch.as_tensor(np.asarray(info[key]))
            shape: tuple[int, ...] = value.shape
            if not self.is_vector and value.ndim == 0:
                shape = (1,)
            self.observation_spec[key] = Unbounded(shape=shape, dtype=value.dtype, device=self.device)
        self._is_reset = False

    # --- conversions ----------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The gymnasium env's current frame (``uint8 [H, W, 3]``; ``[N, H, W, 3]`` for a vector env).

        The env must have been made with ``render_mode="rgb_array"`` and reset. This is what
        :class:`~tdrl.record.PixelRenderTransform` calls.

        Raises:
            RuntimeError: naming ``MUJOCO_GL`` when MuJoCo finds no working OpenGL backend.

        Examples:
            >>> env = GymEnv("HalfCheetah-v5", render_mode="rgb_array", width=32, height=24)  # MUJOCO_GL=egl headless
            >>> _ = env.reset()
            >>> env.render().shape
            (24, 32, 3)
            >>> env.close()
        """
        mujoco = "mujoco" in type(self._env.unwrapped).__module__
        if mujoco:
            refuse_after_gl_failure(type(self).__name__)
        try:
            frame = self._env.render()
        except Exception as err:
            if mujoco:
                note_gl_failure(err)
            raise render_error(err, type(self).__name__) from err
        if self.is_vector and isinstance(frame, (list, tuple)):
            frame = np.stack(frame)
        return frame

    def _render(self) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.render()))

    def _obs_dict(self, obs: Any, info: dict | None) -> dict:
        out: dict = {}
        if not self.pixels_only:
            if self._obs_is_dict:
                out.update(self._flatten(obs))
            else:
                out["observation"] = torch.from_numpy(np.array(obs))
        if self.from_pixels:
            out["pixels"] = self._render()
        if self.info_keys and info is not None:
            for key in self.info_keys:
                value = torch.as_tensor(np.asarray(info[key]))
                out[key] = value.reshape(1) if (not self.is_vector and value.ndim == 0) else value
        return out

    def _flatten(self, obs: Any, prefix: tuple = ()) -> dict:
        out: dict = {}
        items = obs.items() if isinstance(obs, dict) else ((str(i), o) for i, o in enumerate(obs))
        for key, value in items:
            if isinstance(value, (dict, tuple)):
                out.update(self._flatten(value, (*prefix, key)))
            else:
                out[(*prefix, key) if prefix else key] = torch.from_numpy(np.array(value))
        return out

    def _to_td(self, source: dict) -> TensorDict:
        td = (
            TensorDict(source, batch_size=self.batch_size)
            if any(isinstance(k, tuple) for k in source)
            else td_unchecked(source, self.batch_size)
        )
        return td if self.device.type == "cpu" else td.to(self.device)

    def _env_action(self, action: torch.Tensor) -> Any:
        """One step's action as gymnasium takes it: a python int for one env's Discrete action (as TorchRL's)."""
        decode = self._lean_decode
        if decode == _ONE_HOT:
            return int(action.detach().cpu().numpy().argmax())
        if decode == _INDEX:
            return action.item()
        return self._action_to_numpy(action)

    def _action_to_numpy(self, action: torch.Tensor) -> np.ndarray:
        spec = self._action_leaf
        if isinstance(spec, OneHot):
            action = action.argmax(-1)
        elif isinstance(spec, MultiOneHot):
            action = torch.stack([p.argmax(-1) for p in action.split(spec.nvec, -1)], -1)
        return action.detach().cpu().numpy()

    # --- EnvBase --------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        self._seed = seed
        if seed is not None:
            self._env.action_space.seed(seed)
            self._env.observation_space.seed(seed)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        seed = self._seed
        if seed is not None:  # (nn.Module.__setattr__ is slow: skip it when nothing changes)
            self._seed = None
        if self._lean:
            obs, _ = self._env.reset(seed=seed, **kwargs)
            from_numpy = torch.from_numpy
            return td_flat(  # tensors only
                {
                    "observation": from_numpy(np.array(obs)),
                    "done": from_numpy(np.zeros(1, _BOOL)),
                    "terminated": from_numpy(np.zeros(1, _BOOL)),
                    "truncated": from_numpy(np.zeros(1, _BOOL)),
                },
                self.batch_size,
            )
        if self.is_vector and tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(self.batch_size).cpu().numpy()
            if not mask.all():
                kwargs.setdefault("options", {})["reset_mask"] = mask
        obs, info = self._env.reset(seed=seed, **kwargs)
        source = self._obs_dict(obs, info if self.info_keys and self._info_ready(info) else None)
        if self.info_keys and not self._info_ready(info):
            for key in self.info_keys:
                source[key] = self.observation_spec[key].zero()
        return self._to_td(source)

    def _info_ready(self, info: dict) -> bool:
        return all(k in info for k in self.info_keys)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._lean:
            return self._step_lean(tensordict)
        action = self._env_action(tensordict.get("action"))
        env = self._env
        reward = 0.0
        for _ in range(self.frame_skip):
            obs, r, terminated, truncated, info = env.step(action)
            reward = reward + r
            if np.any(terminated) or np.any(truncated):
                break
        b = self.batch_size
        source = self._obs_dict(obs, info)
        source["reward"] = torch.from_numpy(np.asarray(reward, dtype=np.float32).reshape(*b, 1))
        term = torch.from_numpy(np.asarray(terminated, dtype=bool).reshape(*b, 1))
        trunc = torch.from_numpy(np.asarray(truncated, dtype=bool).reshape(*b, 1))
        source["terminated"] = term
        source["truncated"] = trunc
        source["done"] = term | trunc
        return self._to_td(source)

    def _step_lean(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``_step`` for the common case: gymnasium's results straight into new tensors (no per-step dispatch)."""
        action = td_read(tensordict, "action")
        if action is None:
            action = tensordict.get("action")  # tensordict's KeyError
        if action.requires_grad:
            action = action.detach()
        obs, r, terminated, truncated, _ = self._env.step(self._lean_action(action))
        from_numpy = torch.from_numpy
        return td_flat(  # tensors only
            {
                "observation": from_numpy(np.array(obs)),
                "reward": from_numpy(np.array((r,), _F32)),
                "terminated": from_numpy(np.array((terminated,), _BOOL)),
                "truncated": from_numpy(np.array((truncated,), _BOOL)),
                "done": from_numpy(np.array((terminated or truncated,), _BOOL)),
            },
            self.batch_size,
        )

    def _lean_action(self, action: torch.Tensor) -> Any:
        """The lean step's action as gymnasium takes it (a detached CPU tensor: ``_lean`` holds)."""
        decode = self._lean_decode
        if decode == _ONE_HOT:  # numpy's argmax costs a third of torch's on a few elements
            return int(action.numpy().argmax())
        if decode == _INDEX:
            return action.item()
        return action.numpy()

    def _lean_writer(self, out: dict[str, np.ndarray]) -> Callable[[torch.Tensor], bool] | None:
        """A step writing gymnasium's results into ``out``'s arrays; returns whether the episode ended.

        For a worker whose results live in shared memory (``ParallelEnv``): ``_step_lean``
        without its five new tensors. ``out`` maps the step's five keys to arrays shaped as
        the env's specs; ``None`` where this env's step is not the lean one (a subclass's
        ``_step``, options that need the general path) or ``out`` holds other keys.
        """
        if not self._lean or type(self)._step is not GymEnv._step or set(out) != set(_STEP_KEYS):
            return None
        gym_step, to_gym = self._env.step, self._lean_action
        obs_out, reward_out, term_out, trunc_out, done_out = (out[k] for k in _STEP_KEYS)

        def step(action: torch.Tensor) -> bool:
            obs, r, terminated, truncated, _ = gym_step(to_gym(action))
            obs_out[...] = obs
            reward_out[...] = r
            term_out[...] = terminated
            trunc_out[...] = truncated
            done = bool(terminated or truncated)
            done_out[...] = done
            return done

        return step

    def _rollout_fast(self, td: TensorDictBase, max_steps: int, break_when_any_done: bool) -> TensorDictBase | None:
        """A policy-free rollout writing gymnasium's numpy results straight into preallocated tensors.

        Handles the common case (one env, a single array observation, on CPU); returns None
        otherwise so that the generic loop runs.
        """
        if self.is_vector or self.from_pixels or self.info_keys or self._obs_is_dict or self.frame_skip != 1:
            return None
        if self.device.type != "cpu" or set(td.keys()) != {"observation", *self.done_keys}:
            return None
        actions = self.full_action_spec["action"].rand((max_steps,))
        act_np: Any = self._action_to_numpy(actions)
        if self._lean_decode != _AS_ARRAY:
            act_np = act_np.tolist()  # python ints, as a step hands one env's Discrete action to gymnasium
        step, reset = self._env.step, self._env.reset
        return _fill_rollout(step, reset, td.get("observation"), actions, act_np, max_steps, break_when_any_done)

    def close(self) -> None:
        super().close()
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()

    def __getattr__(self, name: str) -> Any:
        """Public attributes the wrapper lacks come from the gymnasium env (``env.spec``, as in TorchRL)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_env")
            if name.startswith("_") or wrapped is None:
                raise
            try:
                return getattr(wrapped, name)
            except AttributeError:
                raise AttributeError(
                    f"{type(self).__name__} (and the {type(wrapped).__name__} it wraps) has no attribute {name!r}."
                ) from None


def _suggest(name: str) -> str:
    ids = list(_gym().envs.registry.keys())
    close = difflib.get_close_matches(name, ids, n=3, cutoff=0.6)
    return f" Did you mean {close}?" if close else " See gymnasium.envs.registry.keys() for the registered ids."


def _make(gym: Any, env_name: str, num_envs: int | None, vectorization_mode: str, kwargs: dict) -> Any:
    """``gymnasium.make`` (or ``make_vec`` with tdrl's autoreset mode when ``num_envs`` is given)."""
    if num_envs is None:
        return gym.make(env_name, **kwargs)
    if num_envs < 1:
        raise ValueError(f"GymEnv: num_envs must be >= 1, got {num_envs}.")
    if vectorization_mode not in ("sync", "async"):
        raise ValueError(f"GymEnv: vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}.")
    return gym.make_vec(
        env_name,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
        **kwargs,
    )


class GymEnv(GymWrapper):
    """Make a gymnasium env by id and wrap it.

    Args:
        env_name: a registered gymnasium id (``"InvertedDoublePendulum-v4"``, ``"CartPole-v1"``, ...).
        num_envs: if given, a gymnasium vector env of that many copies (batch size ``[num_envs]``).
        vectorization_mode: ``"sync"`` (one process) or ``"async"`` (one process per copy).
        categorical_action_encoding: discrete actions as indices instead of one-hot.
        device: where output tensors live.
        frame_skip: repeat each action this many times.
        from_pixels: add rendered ``"pixels"`` (the env is made with ``render_mode="rgb_array"``).
        pixels_only: with ``from_pixels``, keep only the pixels (default ``True``, as TorchRL's
            ``GymEnv``: no ``"observation"``); ``False`` keeps the state observation too.
            Ignored without ``from_pixels`` (``GymWrapper``'s default is ``False``).
        info_keys: ``info`` entries to copy into the output.
        **kwargs: passed to ``gymnasium.make``.

    Raises:
        ValueError: for an unknown id (with the closest registered ids).

    Examples:
        >>> env = GymEnv("CartPole-v1", num_envs=2, categorical_action_encoding=True)
        >>> env.batch_size
        torch.Size([2])
        >>> env.close()
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int | None = None,
        vectorization_mode: str = "sync",
        categorical_action_encoding: bool = False,
        device: Any = None,
        frame_skip: int = 1,
        from_pixels: bool = False,
        pixels_only: bool = True,
        info_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        gym = _gym()
        if env_name not in gym.envs.registry:
            raise ValueError(f"GymEnv: unknown gymnasium id {env_name!r}.{_suggest(env_name)}")
        if from_pixels:
            kwargs.setdefault("render_mode", "rgb_array")
        try:
            env = _make(gym, env_name, num_envs, vectorization_mode, kwargs)
        except Exception as err:  # a MuJoCo env made with a render mode loads its OpenGL backend here
            clear = render_error(err, "GymEnv") if kwargs.get("render_mode") else err
            if clear is err:
                raise
            raise clear from err
        self.env_name = env_name
        super().__init__(
            env,
            categorical_action_encoding=categorical_action_encoding,
            device=device,
            frame_skip=frame_skip,
            from_pixels=from_pixels,
            pixels_only=pixels_only and from_pixels,  # (as TorchRL's: no meaning without pixels)
            info_keys=info_keys,
        )

    def __repr__(self) -> str:
        return f"GymEnv(env={self.env_name!r}, batch_size={tuple(self.batch_size)}, device={self.device})"
