"""Batched envs: N copies of an env stepped as one env of batch size ``[N, *env.batch_size]``.

- :class:`SerialEnv` steps its copies one after the other in this process.
- :class:`ParallelEnv` runs each copy in a worker process. Actions and results travel
  through shared-memory tensors allocated once; a step costs one small message per
  worker over a pipe. A worker that raises makes the parent raise with the worker's
  traceback; a worker that dies or hangs (past ``timeout``) raises too; ``close()``
  (and garbage collection, and interpreter exit) stops every worker.

Both seed worker ``i`` with the seed that worker ``i - 1`` hands on (``seed + i`` for
tdrl's envs), so the same seed gives the same data from either class. Both support
partial resets through ``"_reset"`` (shape ``[N, *env.batch_size, 1]``), and their
``step_and_maybe_reset`` resets the finished copies in the same pass as the step.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> env = SerialEnv(2, lambda: CountingEnv(max_steps=3))
    >>> env.batch_size
    torch.Size([2])
    >>> env.rollout(4, break_when_any_done=False)["next", "observation"].squeeze(-1)
    tensor([[1., 2., 3., 1.],
            [1., 2., 3., 1.]])

``ParallelEnv(2, lambda: CountingEnv(max_steps=3))`` takes the same arguments and gives
the same data, from worker processes (see its docstring).
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl._compat import td_unchecked
from tdrl._workers import STARTUP_TIMEOUT, StartMethod, WorkerPool, report_start, serve, setup_worker
from tdrl.envs._stepping import ActionRunner, group_dims, set_group_dims, td_from_flat
from tdrl.envs._validation import _validation
from tdrl.envs.common import EnvBase
from tdrl.specs import NestedKey, TensorSpec

__all__ = ["SerialEnv", "ParallelEnv"]

EnvFactory = Callable[..., EnvBase]

_NOT_A_FACTORY = (
    "{cls}: create_env_fn must be a callable that returns an env (e.g. lambda: GymEnv('Pendulum-v1')), "
    "got {what}. Pass a function or a class, not an env instance: each worker builds its own copy."
)
_AFTER_CLOSE = "use it again (the next call starts new workers)"
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


# --- ParallelEnv ------------------------------------------------------------------------------


def _build_env(payload: bytes) -> EnvBase:
    fn, kwargs = pickle.loads(payload)
    env = fn(**kwargs)
    if not isinstance(env, EnvBase):
        raise TypeError(f"create_env_fn returned a {type(env).__name__}, not an EnvBase")
    return env


def _worker_main(
    idx: int, sock: socket.socket, inherited: socket.socket | None, payload: bytes, parent_pid: int
) -> None:
    """A ParallelEnv worker: build the env, then serve requests until "close" or the parent dies."""
    setup_worker(inherited)
    env = report_start(sock, idx, lambda: _build_env(payload), lambda e: (e.batch_size, e.input_spec, e.output_spec))
    if env is None:
        return
    try:
        serve(sock, parent_pid, _Worker(idx, env).handle)
    finally:
        env.close()


class _Worker:
    """The worker's side of the protocol: read inputs from, and write results into, shared memory."""

    # views of the shared buffers, set by the "buffers" command before any other
    inp: dict[NestedKey, torch.Tensor]
    next: list[tuple[NestedKey, torch.Tensor]]
    root: list[tuple[NestedKey, torch.Tensor]]

    def __init__(self, idx: int, env: EnvBase) -> None:
        self.idx, self.env = idx, env
        self.batch = env.batch_size
        self.in_keys, self.next_keys, self.root_keys = _env_keys(env.batch_size, env.input_spec, env.output_spec)
        self.direct = type(env).step is EnvBase.step
        self.checked = False
        self.runner: ActionRunner | None = None
        self.run_actions: dict = {}
        self.run_out: dict = {}

    def handle(self, cmd: str, arg: Any) -> Any:
        if cmd == "step":
            self._step()
            return None
        if cmd == "step_reset":
            nxt = self._step()
            done = nxt.get("done")
            if not bool(done.any()):
                return False
            # the next root: reset values where done, the step's values elsewhere
            fresh = self._reset(done)
            for key, dst in self.root:
                value = fresh.get(key, None)
                if value is None:
                    continue
                if self.batch:
                    m = done.reshape(*self.batch, *([1] * (value.ndim - len(self.batch))))
                    after = nxt.get(key, None)
                    value = torch.where(m, value, after) if after is not None else value
                dst.copy_(value)
            return True
        if cmd == "reset":
            mask = self.inp["_reset"].clone() if self.batch else None
            self._write(self.root, self._reset(mask, **arg))
            return None
        if cmd == "run":
            steps, actions, out = arg
            return self._run(steps, actions, out)
        if cmd == "seed":
            return self.env.set_seed(arg)
        if cmd == "getattr":
            return _describe_attr(self.env, arg)
        if cmd == "call":
            name, args, kwargs = arg
            return getattr(self.env, name)(*args, **kwargs)
        if cmd == "render":
            frame = _render_sub(self.env, self.idx, arg)
            return np.asarray(frame.detach().cpu() if isinstance(frame, torch.Tensor) else frame)
        if cmd == "buffers":
            inp, nxt, root = arg
            i = self.idx
            self.inp = {k: v[i] for k, v in inp.items()}
            self.next = [(k, v[i]) for k, v in nxt.items()]
            self.root = [(k, v[i]) for k, v in root.items()]
            return None
        raise ValueError(f"ParallelEnv worker: unknown command {cmd!r}")

    def _run(self, steps: int, actions: TensorDictBase | None, out: TensorDictBase | None) -> TensorDictBase | None:
        """Run ``steps`` given actions from the current root.

        The parent sends the shared actions buffer and this worker's shared output buffer
        with each request until this worker has used them; until then the output is
        returned by value (the parent makes the shared buffer from it).
        """
        if actions is not None:
            self.run_actions[steps] = actions[self.idx]
        if out is not None:
            self.run_out[steps] = out
        if self.runner is None:
            self.runner = ActionRunner(self.env)
        root = td_from_flat({k: v.clone() for k, v in self.root}, self.batch)
        data, root = self.runner.run(root, self.run_actions[steps], steps)
        self._write(self.root, root)
        shared = self.run_out.get(steps)
        if shared is None:
            return data
        shared.update_(data)
        return None

    def _reset(self, mask: torch.Tensor | None, **kwargs: Any) -> TensorDictBase:
        sub = None if mask is None else td_unchecked({"_reset": mask}, self.batch)
        return self.env.reset(sub, **kwargs)

    def _step(self) -> TensorDictBase:
        td = td_from_flat({k: self.inp[k] for k in self.in_keys}, self.batch)
        if self.direct and self.checked:
            nxt = self.env._step(td)
        else:
            nxt = self.env.step(td).get("next")
            self._check(nxt)
            self.checked = True
        for key, dst in self.next:
            dst.copy_(nxt.get(key))
        return nxt

    def _check(self, nxt: TensorDictBase) -> None:
        written = set(nxt.keys(True, True))
        missing = [k for k, _ in self.next if k not in written]
        if missing:
            raise KeyError(
                f"the env's step did not write {missing} (it wrote {sorted(map(str, written))}), which its specs "
                f"declare. Fix the env's _step or its specs (check_env_specs(env) shows the mismatch)."
            )

    def _write(self, pairs: list, td: TensorDictBase, only: torch.Tensor | None = None) -> None:
        for key, dst in pairs:
            value = td.get(key, None)
            if value is None:
                continue
            if only is None or not self.batch:
                dst.copy_(value)
            else:
                m = only.reshape(*self.batch, *([1] * (value.ndim - len(self.batch))))
                dst.copy_(torch.where(m, value, dst))


class ParallelEnv(_BatchedEnv):
    """``num_workers`` copies of an env, each stepped in its own worker process.

    Inputs (actions, reset masks) and outputs live in shared-memory tensors allocated
    once; each step sends one short message to each worker and waits for its answer.

    Faults (see ``tdrl/_workers/`` for the protocol):

    - a worker that raises makes the call raise ``RuntimeError`` with the worker's
      traceback; the env stays usable (as an env whose ``step`` raised);
    - a worker that dies makes the call raise ``RuntimeError`` with its exit code at once,
      and one that does not answer within ``timeout`` raises ``TimeoutError`` naming it;
    - a call interrupted while it waits (Ctrl-C, a ``TimeoutError``) is resynchronized:
      the next call first waits, up to ``timeout``, for the replies the interrupted one was
      owed and drops them, so a result always belongs to its own request (the copies may
      have taken the interrupted step: reset for a known state);
    - after a worker died, missed two deadlines in a row, or an exception cut a message
      half-way, every call raises ``RuntimeError`` saying so: ``close()`` it, and its next
      ``reset()`` starts new workers.

    A closed env starts new workers when it is used again (``reset``, ``step``,
    ``rollout``, ``set_seed``), as TorchRL's does; the new copies are built afresh, so seed
    them again for reproducible data. :attr:`is_closed` tells whether the workers are stopped.

    ``close()``, garbage collection and interpreter exit stop the workers; a worker whose
    parent is killed exits by itself within about a second. A worker may start processes
    of its own (e.g. an env that runs a ``ParallelEnv``).

    Args:
        num_workers: how many worker processes (one env copy each).
        create_env_fn: a callable returning an env, or a list of them, one per worker.
            It is serialized with cloudpickle, so lambdas work under "spawn" too.
        create_env_kwargs: keyword arguments for ``create_env_fn`` (a dict, or one per worker).
        mp_start_method: "fork", "spawn" or "forkserver" (default: the platform's default).
        timeout: seconds to wait for a worker's answer before raising ``TimeoutError``
            (env construction gets at least 300 s).
        device: the device of the batched env (default: the copies' device).
        serial_for_single: with ``num_workers=1``, build a :class:`SerialEnv` instead (same
            batch size, no worker process); no effect with more workers. Default ``False``.
        pin_memory: accepted for TorchRL programs, which pass ``False``; ``True`` raises
            ``ValueError`` as in TorchRL 0.14.1 (append a ``PinMemoryTransform`` instead).

    Raises:
        TypeError: ``create_env_fn`` is an env instance or not callable.
        RuntimeError: a worker raised (the message holds its traceback) or died, or the env
            is closed or can no longer be trusted (the message says why).
        TimeoutError: a worker did not answer within ``timeout``.
        ValueError: the copies do not share their batch size and specs.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> env = ParallelEnv(2, CountingEnv, create_env_kwargs={"max_steps": 2})
        >>> env.set_seed(0)
        2
        >>> env.rand_step(env.reset())["next", "observation"].squeeze(-1)
        tensor([1., 1.])
        >>> env.close()
        >>> type(ParallelEnv(1, CountingEnv, serial_for_single=True)).__name__
        'SerialEnv'
    """

    def __new__(cls, *args: Any, serial_for_single: bool = False, **kwargs: Any) -> Any:
        num_workers = kwargs.get("num_workers", args[0] if args else None)
        if serial_for_single and num_workers == 1:
            # one copy needs no worker process: an in-process SerialEnv keeps the batch size
            kwargs.pop("mp_start_method", None)
            kwargs.pop("timeout", None)
            return SerialEnv(*args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        num_workers: int,
        create_env_fn: EnvFactory | Sequence[EnvFactory],
        create_env_kwargs: dict | Sequence[dict] | None = None,
        mp_start_method: StartMethod = None,
        timeout: float = 300.0,
        device: Any = None,
        serial_for_single: bool = False,
        pin_memory: bool = False,
    ) -> None:
        _check_pin_memory("ParallelEnv", pin_memory)
        factories = _normalize_factories("ParallelEnv", num_workers, create_env_fn, create_env_kwargs)
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
            cloudpickle = pickle
        payloads = [cloudpickle.dumps(factory) for factory in factories]
        workers = WorkerPool("ParallelEnv", _worker_main, payloads, mp_start_method, timeout, after=_AFTER_CLOSE)
        try:
            metas = workers.started(max(timeout, STARTUP_TIMEOUT))
            _meta_mismatch("ParallelEnv", metas)
            super().__init__(num_workers, metas[0], device if device is not None else metas[0][2].device)
            self._workers, self.timeout = workers, timeout
            self._payloads, self._start_method, self._metas = payloads, mp_start_method, metas
            self._run_actions: dict = {}
            self._run_out: dict = {}
            self._alloc_buffers()
        except BaseException:
            workers.close(grace=1.0)
            raise

    @property
    def _procs(self) -> list:
        """The worker processes (for tests and diagnostics)."""
        return self._workers.procs

    def _alloc_buffers(self) -> None:
        b = self.batch_size
        full_in = self.full_action_spec.clone().update(self.full_state_spec.clone())
        # the key lists hold leaf keys, whose specs are leaves
        inp = {k: cast(TensorSpec, full_in[k]).zero() for k in self._in_keys}
        inp["_reset"] = torch.zeros((*b, 1), dtype=torch.bool)
        leaf: dict[NestedKey, TensorSpec] = {}
        for part in (self.full_observation_spec, self.full_reward_spec, self.full_done_spec):
            for k in part.keys(True, True):
                leaf[k] = cast(TensorSpec, part[k])
        for k in self.full_state_spec.keys(True, True):
            leaf.setdefault(k, cast(TensorSpec, self.full_state_spec[k]))
        nxt = {k: leaf[k].zero() for k in self._next_keys}
        root = {k: leaf[k].zero() for k in self._root_keys}
        for bufs in (inp, nxt, root):
            for t in bufs.values():
                t.share_memory_()
        self._in_buf, self._next_buf, self._root_buf = inp, nxt, root
        self._call(range(self.num_workers), "buffers", (inp, nxt, root))

    # --- starting and stopping --------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """Whether the workers are stopped (by :meth:`close`); the next use starts new ones."""
        return self._workers.closed

    def start(self) -> None:
        """Start the workers again after :meth:`close` (a running env is left as it is).

        Any use of a closed env (``reset``, ``step``, ``rollout``, ``set_seed``, a sub-env
        attribute) calls this first, as TorchRL's ``ParallelEnv`` does. The new workers
        build their env copies afresh: seed them again for reproducible data.
        """
        if not self._workers.closed:
            return
        workers = WorkerPool(
            "ParallelEnv", _worker_main, self._payloads, self._start_method, self.timeout, after=_AFTER_CLOSE
        )
        try:
            metas = workers.started(max(self.timeout, STARTUP_TIMEOUT))
            for i, (ours, theirs) in enumerate(zip(self._metas, metas)):
                for what, a, b in zip(("batch_size", "input_spec", "output_spec"), ours, theirs):
                    if a != b:
                        raise ValueError(
                            f"ParallelEnv.start: the env rebuilt for worker {i} differs from the first build: its "
                            f"{what} is {b}, it was {a}. create_env_fn must build the same env every time."
                        )
            workers.call(range(self.num_workers), "buffers", (self._in_buf, self._next_buf, self._root_buf))
        except BaseException:
            workers.close(grace=1.0)
            raise
        self._workers = workers
        self._run_out = {}  # the new workers have not seen the rollout buffers yet
        self._is_reset = False

    # --- messaging --------------------------------------------------------------------------
    def _idle(self, start: bool = False) -> None:
        """Make sure no worker still works on an interrupted request before the shared buffers are touched.

        ``start``: a closed env starts new workers (what its env methods do; attribute
        look-ups on a closed env raise instead, so that introspection never starts processes).
        """
        workers = self._workers
        if start and workers.closed:
            self.start()
            return
        if workers.owed:
            workers.drain()
        else:
            workers.check()

    def _call(self, workers: Sequence[int], cmd: str, arg: Any = None, args: Sequence[Any] | None = None) -> list:
        return self._workers.call(workers, cmd, arg, args)

    def _attr_each(self, name: str) -> list:
        self._idle()
        return self._call(range(self.num_workers), "getattr", name)

    def _call_each(self, name: str, args: tuple, kwargs: dict) -> list:
        self._idle()
        return self._call(range(self.num_workers), "call", (name, args, kwargs))

    def _write_inputs(self, tensordict: TensorDictBase) -> None:
        for key in self._in_keys:
            value = tensordict.get(key, None)
            if value is not None:
                self._in_buf[key].copy_(value)

    def _read(self, buf: dict) -> TensorDictBase:
        return set_group_dims(td_from_flat({k: v.clone() for k, v in buf.items()}, self.batch_size), self._groups)

    # --- EnvBase ----------------------------------------------------------------------------
    def _render_each(self, kwargs: dict) -> list:
        self._idle()
        return self._call(list(range(self.num_workers)), "render", kwargs)

    def _seed_workers(self, seed: int | None) -> int | None:
        self._idle(start=True)
        for i in range(self.num_workers):
            seed = self._call([i], "seed", seed)[0]
        return seed

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = self._reset_mask(tensordict)
        self._idle(start=True)
        if mask is None:
            workers = list(range(self.num_workers))
            self._in_buf["_reset"].fill_(True)
        else:
            workers = [i for i in range(self.num_workers) if bool(mask[i].any())]
            self._in_buf["_reset"].copy_(mask.reshape(self._in_buf["_reset"].shape))
        self._call(workers, "reset", kwargs)
        return self._read(self._root_buf)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._idle(start=True)
        self._write_inputs(tensordict)
        self._call(range(self.num_workers), "step")
        return self._read(self._next_buf)

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step every worker and reset the finished copies in the same round trip."""
        if self._action_checks is None or not self._is_reset or _validation.actions or _validation.outputs:
            # the first step (and every step under set_validation) goes through EnvBase: it validates
            tensordict = self.step(tensordict)
            return tensordict, self._next_root(tensordict)
        self._idle(start=True)
        self._write_inputs(tensordict)
        dones = self._call(range(self.num_workers), "step_reset")
        nxt = self._read(self._next_buf)
        tensordict.set("next", nxt)
        env_root = nxt.select(*self._root_keys, strict=False)  # shares the step's tensors, as step_mdp does
        if any(dones):
            src = {}
            for key, buf in self._root_buf.items():
                value = env_root.get(key, None)
                value = buf.clone() if value is None else value.clone()
                for i, done in enumerate(dones):
                    if done:
                        value[i] = buf[i]  # the worker wrote its reset root there
                src[key] = value
            env_root = set_group_dims(td_from_flat(src, self.batch_size), self._groups)
        return tensordict, self._root_from(tensordict, nxt, env_root)

    def _rollout_actions(self, root: TensorDictBase, actions: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        steps = actions.shape[-1]
        self._idle(start=True)
        for key, buf in self._root_buf.items():  # the workers start from the caller's root
            value = root.get(key, None)
            if value is not None:
                buf.copy_(value)
        shared = self._run_actions.get(steps)
        if shared is None:
            shared = self._run_actions[steps] = actions.clone().share_memory_()
        else:
            shared.update_(actions)
        outs, used = self._run_out.setdefault(steps, ([None] * self.num_workers, [False] * self.num_workers))
        # the shared buffers go with each request until the worker has used them
        args = [(steps, None, None) if used[i] else (steps, shared, outs[i]) for i in range(self.num_workers)]
        payloads = self._call(range(self.num_workers), "run", args=args)
        for i, payload in enumerate(payloads):
            used[i] = payload is None  # None: it wrote into outs[i]; else its output, by value
            if payload is not None:
                outs[i] = payload.share_memory_()  # (a copy of the worker's: ours to share)
        data = cast(TensorDictBase, torch.stack(outs, 0))  # TensorDicts, stacked by tensordict
        return data, self._carry(root, self._read(self._root_buf))

    def close(self) -> None:
        """Stop the workers (idempotent; a later use starts new ones). Called on garbage collection and at exit too."""
        super().close()
        workers = getattr(self, "_workers", None)
        if workers is not None:
            workers.close()
