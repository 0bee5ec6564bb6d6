"""What SerialEnv and ParallelEnv share: argument checks, key lists, the batched env base class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.envs._stepping import group_dims
from tdrl.envs.common import EnvBase

EnvFactory = Callable[..., EnvBase]

_NOT_A_FACTORY = (
    "{cls}: create_env_fn must be a callable that returns an env (e.g. lambda: GymEnv('Pendulum-v1')), "
    "got {what}. Pass a function or a class, not an env instance: each worker builds its own copy."
)
_SPEC_MISMATCH = (
    "{cls}: the env built for worker {i} differs from worker 0's: its {what} is {theirs}, worker 0's is {ours}. "
    "Every worker must build the same kind of env (same batch size and specs)."
)


def _normalize_factories(cls: str, num_workers: int, create_env_fn: Any, create_env_kwargs: Any) -> list:
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"{cls}: num_workers must be an int >= 1, got {num_workers!r}.")
    fns = list(create_env_fn) if isinstance(create_env_fn, (list, tuple)) else [create_env_fn] * num_workers
    if len(fns) != num_workers:
        raise ValueError(
            f"{cls}: got {len(fns)} create_env_fn for num_workers={num_workers}; give one or one per worker."
        )
    if create_env_kwargs is None:
        kws: list = [{} for _ in range(num_workers)]
    elif isinstance(create_env_kwargs, dict):
        kws = [dict(create_env_kwargs) for _ in range(num_workers)]
    else:
        kws = [dict(k) for k in create_env_kwargs]
        if len(kws) != num_workers:
            raise ValueError(
                f"{cls}: got {len(kws)} create_env_kwargs for num_workers={num_workers}; give a dict or one per worker."
            )
    for fn in fns:
        if isinstance(fn, EnvBase) or not callable(fn):
            raise TypeError(_NOT_A_FACTORY.format(cls=cls, what=f"a {type(fn).__name__} instance"))
    return list(zip(fns, kws))


def _env_keys(batch_size: torch.Size, input_spec, output_spec) -> tuple[list, list, list]:
    """(input keys, next keys, root keys) of an env, as leaf keys, from its specs."""
    obs = output_spec["full_observation_spec"].keys(True, True)
    rew = output_spec["full_reward_spec"].keys(True, True)
    done = output_spec["full_done_spec"].keys(True, True)
    act = input_spec["full_action_spec"].keys(True, True)
    state = input_spec["full_state_spec"].keys(True, True)
    return [*act, *state], [*obs, *rew, *done], [*obs, *done, *[k for k in state if k not in obs]]


def _meta_mismatch(cls: str, metas: list) -> None:
    b0, in0, out0 = metas[0]
    for i, (b, inp, out) in enumerate(metas[1:], start=1):
        for what, theirs, ours in (("batch_size", b, b0), ("input_spec", inp, in0), ("output_spec", out, out0)):
            if theirs != ours:
                raise ValueError(_SPEC_MISMATCH.format(cls=cls, i=i, what=what, theirs=theirs, ours=ours))


def _check_pin_memory(cls_name: str, pin_memory: bool) -> None:
    """TorchRL 0.14.1 keeps ``pin_memory`` in the batched envs' signature but refuses ``True``."""
    if pin_memory:
        raise ValueError(
            f"{cls_name}(pin_memory=True): batched envs no longer pin their buffers (TorchRL 0.14.1 refuses it "
            "too). Fix: pass pin_memory=False, and append a PinMemoryTransform to pin the outputs."
        )


class _BatchedEnv(EnvBase):
    """What SerialEnv and ParallelEnv share: specs expanded by ``num_workers``, key lists, seeding."""

    def __init__(self, num_workers: int, meta: tuple, device: Any = None) -> None:
        sub_batch, input_spec, output_spec = meta
        self.sub_batch_size = torch.Size(sub_batch)
        super().__init__(device=device, batch_size=(num_workers, *self.sub_batch_size))
        self.num_workers = num_workers
        self.output_spec = output_spec.expand(num_workers, *output_spec.shape)
        self.input_spec = input_spec.expand(num_workers, *input_spec.shape)
        self._in_keys, self._next_keys, self._root_keys = _env_keys(self.sub_batch_size, input_spec, output_spec)
        self._action_set = set(self._in_keys)
        # a group such as "agents" keeps its dims ([*B, n_agents]) in the TensorDicts built from flat keys
        self._groups = group_dims(
            *(output_spec[k] for k in output_spec.keys()), *(input_spec[k] for k in input_spec.keys())
        )

    # --- the sub-envs' attributes (TorchRL: ``parallel_env.foo`` lists each worker's ``foo``) -------
    def start(self) -> None:
        """Kept for TorchRL programs: tdrl starts the workers when the env is built."""

    def __getattr__(self, name: str) -> Any:
        """A public attribute the batched env lacks: one value per sub-env, or a method calling each."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or "_action_set" not in self.__dict__:  # private, or still being built
                raise
        try:
            kinds = self._attr_each(name)
        except RuntimeError as err:  # closed workers: getattr(env, name, default) must still work
            raise AttributeError(f"{type(self).__name__}.{name}: the sub-envs cannot be asked ({err})") from err
        if all(kind == "missing" for kind, _ in kinds):
            raise AttributeError(f"{type(self).__name__} (and its sub-envs) has no attribute {name!r}.")
        if all(kind == "method" for kind, _ in kinds):
            return lambda *args, **kwargs: self._call_each(name, args, kwargs)
        return [value for _, value in kinds]

    def _attr_each(self, name: str) -> list:
        raise NotImplementedError

    def _call_each(self, name: str, args: tuple, kwargs: dict) -> list:
        raise NotImplementedError

    def _root_from(self, td: TensorDictBase, nxt: TensorDictBase, env_root: TensorDictBase) -> TensorDictBase:
        """The next step's root: the env's entries, then what ``step_mdp`` would carry over."""
        src = dict(env_root.items())
        for key, value in nxt.items():
            if key not in src and key not in self.reward_keys:
                src[key] = value
        for key, value in td.items():
            if key not in src and key != "next" and key not in self._action_set:
                src[key] = value
        return td_unchecked(src, self.batch_size, None)

    def _carry(self, old_root: TensorDictBase, env_root: TensorDictBase) -> TensorDictBase:
        """``env_root`` plus the entries of ``old_root`` that the env does not own (e.g. a policy's state)."""
        src = dict(env_root.items())
        for key, value in old_root.items():
            if key not in src and key != "next" and key != "_reset" and key not in self._action_set:
                src[key] = value
        return td_unchecked(src, self.batch_size, None)

    def _rollout_actions(self, root: TensorDictBase, actions: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Run a given sequence of actions (``[*batch_size, T]``, open loop), resetting what ends.

        Returns the stacked steps (shape ``[*batch_size, T]``, with ``"next"``) and the
        root of the following step. Used by collectors for random actions: no per-step
        round trip, so ParallelEnv's workers run all ``T`` steps concurrently.
        """
        raise NotImplementedError

    def _reset_mask(self, tensordict: TensorDictBase | None) -> torch.Tensor | None:
        if tensordict is None:
            return None
        mask = tensordict.get("_reset", None)
        if mask is None:
            return None
        return mask.reshape(self.num_workers, -1)

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seed worker ``i`` with the seed worker ``i - 1`` returns; returns the next free seed."""
        return self._seed_workers(seed)

    def _seed_workers(self, seed: int | None) -> int | None:
        raise NotImplementedError

    def render(self, **kwargs: Any) -> np.ndarray:
        """Each sub-env's ``render(**kwargs)``, stacked: ``[N, *frame_shape]`` (what ``PixelRenderTransform`` reads).

        Raises:
            ValueError: when a sub-env has no ``render`` method, or the frames differ in shape.
        """
        frames = [np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f) for f in self._render_each(kwargs)]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(
                f"{type(self).__name__}.render: the sub-envs rendered frames of different shapes {sorted(shapes)}; "
                "they are stacked into one array. Fix: render every sub-env at the same size."
            )
        return np.stack(frames)

    def _render_each(self, kwargs: dict) -> list:
        raise NotImplementedError

    def _set_seed(self, seed: int | None) -> None:
        self._seed_workers(seed)


def _describe_attr(env: Any, name: str) -> tuple[str, Any]:
    """``("value", v)``, ``("method", None)`` or ``("missing", None)`` for ``env.<name>``."""
    try:
        value = getattr(env, name)
    except AttributeError:
        return "missing", None
    return ("method", None) if callable(value) else ("value", value)


def _render_sub(env: Any, idx: int, kwargs: dict) -> Any:
    """Sub-env ``idx``'s ``render(**kwargs)``, or a ValueError saying it has none."""
    render = getattr(env, "render", None)
    if not callable(render):
        raise ValueError(
            f"batched env: sub-env {idx} ({type(env).__name__}) has no render() method. Fix: build the sub-envs "
            "so that they render (GymEnv(name, render_mode='rgb_array'), DMControlEnv, or an env with render())."
        )
    return render(**kwargs)
