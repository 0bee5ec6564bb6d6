"""The worker side of ParallelEnv: build the env copy, then read inputs from and write results into shared memory."""

from __future__ import annotations

import pickle
import socket
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read, td_unchecked
from tdrl._workers import WorkerLane, report_start, serve, setup_worker
from tdrl.envs._batched_base import _describe_attr, _env_keys, _render_sub
from tdrl.envs._stepping import ActionRunner, td_from_flat
from tdrl.envs.common import EnvBase
from tdrl.specs import NestedKey


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
        worker = _Worker(idx, env)
        serve(sock, parent_pid, worker.handle, worker.lane)
    finally:
        env.close()


class _Worker:
    """The worker's side of the protocol: read inputs from, and write results into, shared memory."""

    # views of the shared buffers, set by the "buffers" command before any other
    inp: dict[NestedKey, torch.Tensor]
    next: list[tuple[NestedKey, torch.Tensor]]
    root: list[tuple[NestedKey, torch.Tensor]]
    step_in: dict[NestedKey, torch.Tensor]  # the inputs a step reads

    def __init__(self, idx: int, env: EnvBase) -> None:
        self.idx, self.env = idx, env
        self.batch = env.batch_size
        self.in_keys, self.next_keys, self.root_keys = _env_keys(env.batch_size, env.input_spec, env.output_spec)
        self.direct = type(env).step is EnvBase.step
        self.checked = False
        self.runner: ActionRunner | None = None
        self.run_actions: dict = {}
        self.run_out: dict = {}
        self.lane = WorkerLane()  # attached by "buffers" when the parent has a lane
        # an env that writes its step straight into the shared arrays (GymEnv's lean step), once checked
        self.writer: Any = None

    def handle(self, cmd: str, arg: Any) -> Any:
        if cmd == "step":
            self._step()
            return None
        if cmd == "step_reset":
            if self.writer is not None:
                return self._step_reset_written()
            nxt = self._step()
            done = td_read(nxt, "done")
            if done is None:
                done = nxt.get("done")  # tensordict's KeyError
            if not done.any():
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
            inp, nxt, root, lane = arg
            if lane is not None:
                self.lane.attach(lane)
            i = self.idx
            self.inp = {k: v[i] for k, v in inp.items()}
            self.next = [(k, v[i]) for k, v in nxt.items()]
            self.root = [(k, v[i]) for k, v in root.items()]
            self.step_in = {k: self.inp[k] for k in self.in_keys}
            self.writer = None
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

    def _step_reset_written(self) -> bool:
        """``step_reset`` through the env's array writer: the step's results land in the shared buffers directly."""
        writer, action, done = self.writer
        if not writer(action):
            return False
        fresh = self._reset(done.clone())
        for key, dst in self.root:
            value = fresh.get(key, None)
            if value is not None:
                dst.copy_(value)
        return True

    def _writer(self) -> Any:
        """(step, action buffer, done buffer) when the env can write a step into the shared arrays, else None.

        Only for an unbatched env whose ``step`` is ``EnvBase``'s, reading the action alone
        and writing exactly the arrays its ``_lean_writer`` accepts (GymEnv's lean step).
        """
        # looked up on the class: a wrapper whose __getattr__ forwards to an inner env must not lend its step
        make = getattr(type(self.env), "_lean_writer", None)
        if make is None or not self.direct or self.batch or list(self.step_in) != ["action"]:
            return None
        if not all(type(k) is str for k, _ in self.next):
            return None
        step = make(self.env, {k: v.numpy() for k, v in self.next})
        if step is None:
            return None
        return step, self.step_in["action"], dict(self.next)["done"]

    def _step(self) -> TensorDictBase:
        td = td_from_flat(dict(self.step_in), self.batch)
        if self.direct and self.checked:
            nxt = self.env._step(td)
        else:
            nxt = self.env.step(td).get("next")
            self._check(nxt)
            self.checked = True
            self.writer = self._writer()  # checked once through env.step: the next steps may skip it
        for key, dst in self.next:
            value = td_read(nxt, key)
            dst.copy_(nxt.get(key) if value is None else value)  # (a missing key: tensordict's KeyError)
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
