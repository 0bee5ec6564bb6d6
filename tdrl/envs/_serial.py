"""SerialEnv: N copies of an env stepped one after the other in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl._compat import td_unchecked
from tdrl.envs._batched_base import (
    EnvFactory,
    _BatchedEnv,
    _check_pin_memory,
    _describe_attr,
    _meta_mismatch,
    _normalize_factories,
    _render_sub,
)
from tdrl.envs._stepping import ActionRunner, set_group_dims, td_from_flat
from tdrl.envs.common import EnvBase

__all__ = ["SerialEnv"]


class SerialEnv(_BatchedEnv):
    """``num_workers`` copies of an env, stepped one after the other in this process.

    Args:
        num_workers: how many copies.
        create_env_fn: a callable returning an env (``lambda: GymEnv("Pendulum-v1")``),
            or a list of them, one per copy.
        create_env_kwargs: keyword arguments for ``create_env_fn`` (a dict, or one per copy).
        device: the device of the batched env (default: the copies' device).
        pin_memory: accepted for TorchRL programs, which pass ``False``; ``True`` raises
            ``ValueError`` as in TorchRL 0.14.1.

    Raises:
        TypeError: ``create_env_fn`` is an env instance or not callable.
        ValueError: the copies do not share their batch size and specs.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> env = SerialEnv(3, CountingEnv, create_env_kwargs={"max_steps": 2})
        >>> env.set_seed(0)
        3
        >>> env.rand_step(env.reset())["next", "observation"].shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        num_workers: int,
        create_env_fn: EnvFactory | Sequence[EnvFactory],
        create_env_kwargs: dict | Sequence[dict] | None = None,
        device: Any = None,
        pin_memory: bool = False,
    ) -> None:
        _check_pin_memory("SerialEnv", pin_memory)
        factories = _normalize_factories("SerialEnv", num_workers, create_env_fn, create_env_kwargs)
        envs = []
        for i, (fn, kwargs) in enumerate(factories):
            env = fn(**kwargs)
            if not isinstance(env, EnvBase):
                raise TypeError(
                    f"SerialEnv: create_env_fn of worker {i} returned a {type(env).__name__}, not an EnvBase."
                )
            envs.append(env)
        metas = [(e.batch_size, e.input_spec, e.output_spec) for e in envs]
        _meta_mismatch("SerialEnv", metas)
        super().__init__(num_workers, metas[0], device if device is not None else envs[0].device)
        self.envs = nn.ModuleList(envs)
        # an env that keeps EnvBase.step is stepped through _step (the parent validated the action)
        self._direct = [type(e).step is EnvBase.step for e in envs]
        self._runners = [ActionRunner(e) for e in envs]

    def _seed_workers(self, seed: int | None) -> int | None:
        for env in self.envs:
            seed = cast(EnvBase, env).set_seed(seed)
        return seed

    def _attr_each(self, name: str) -> list:
        envs = self._modules.get("envs")
        if envs is None:  # still being built
            raise AttributeError(f"SerialEnv has no attribute {name!r} yet.")
        return [_describe_attr(env, name) for env in cast(nn.ModuleList, envs)]

    def _call_each(self, name: str, args: tuple, kwargs: dict) -> list:
        return [getattr(env, name)(*args, **kwargs) for env in self.envs]

    def _sub_td(self, tensordict: TensorDictBase, i: int) -> TensorDictBase:
        src = {}
        for key in self._in_keys:
            value = tensordict.get(key, None)
            if value is not None:
                src[key] = value[i]
        return td_from_flat(src, self.sub_batch_size)

    def _stack(self, outs: list, keys: list) -> TensorDictBase:
        src = {}
        for key in keys:
            values = [o.get(key) for o in outs]
            src[key] = torch.stack(values) if len(values) > 1 else values[0].unsqueeze(0)
        return set_group_dims(td_from_flat(src, self.batch_size), self._groups)

    def _reset_one(self, i: int, mask: torch.Tensor | None, **kwargs: Any) -> TensorDictBase:
        sub = None
        if mask is not None and self.sub_batch_size:
            sub = td_unchecked({"_reset": mask.reshape(*self.sub_batch_size, 1)}, self.sub_batch_size)
        return cast(EnvBase, self.envs[i]).reset(sub, **kwargs)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = self._reset_mask(tensordict)
        outs: list = []
        for i in range(self.num_workers):
            if mask is not None and not bool(mask[i].any()):
                outs.append(None)
                continue
            outs.append(self._reset_one(i, None if mask is None else mask[i], **kwargs))
        template = next(o for o in outs if o is not None)
        keys = template.keys(True, True)
        outs = [o if o is not None else template.apply(torch.zeros_like) for o in outs]
        return self._stack(outs, keys)

    def _step_one(self, i: int, sub: TensorDictBase) -> TensorDictBase:
        env = cast(EnvBase, self.envs[i])  # self.envs is a ModuleList of EnvBase
        if self._direct[i]:
            return env._step(sub)
        return env.step(sub).get("next")

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        nexts = [self._step_one(i, self._sub_td(tensordict, i)) for i in range(self.num_workers)]
        return self._stack(nexts, nexts[0].keys(True, True))

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step every copy and reset, in the same pass, the copies that are done."""
        tensordict = self.step(tensordict)
        nxt = tensordict.get("next")
        done = nxt.get("done").reshape(self.num_workers, -1)
        env_root = nxt.select(*self._root_keys, strict=False)
        if bool(done.any()):
            env_root = env_root.clone()
            for i in range(self.num_workers):
                if bool(done[i].any()):
                    fresh = self._reset_one(i, done[i])
                    for key in env_root.keys(True, True):
                        value = fresh.get(key, None)
                        if value is None:
                            continue
                        m = done[i].reshape(*self.sub_batch_size, *([1] * (value.ndim - len(self.sub_batch_size))))
                        env_root.get(key)[i] = torch.where(m, value, env_root.get(key)[i])
        return tensordict, self._root_from(tensordict, nxt, env_root)

    def _rollout_actions(self, root: TensorDictBase, actions: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        steps = actions.shape[-1]
        batches, roots = [], []
        for i, runner in enumerate(self._runners):
            src = {}
            for key in self._root_keys:
                value = root.get(key, None)
                if value is not None:
                    src[key] = value[i]
            data, sub_root = runner.run(td_from_flat(src, self.sub_batch_size), actions[i], steps)
            batches.append(data)
            roots.append(sub_root.select(*self._root_keys, strict=False))
        # torch.stack hands TensorDicts to tensordict (__torch_function__), which stacks them into one
        data = cast(TensorDictBase, torch.stack(cast("list[torch.Tensor]", batches), 0))
        return data, self._carry(root, cast(TensorDictBase, torch.stack(cast("list[torch.Tensor]", roots), 0)))

    def _render_each(self, kwargs: dict) -> list:
        return [_render_sub(env, i, kwargs) for i, env in enumerate(self.envs)]

    def close(self) -> None:
        super().close()
        for env in getattr(self, "envs", []):
            env.close()
