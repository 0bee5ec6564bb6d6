"""A native torch Pendulum: gymnasium's ``Pendulum-v1``, batched and device-resident.

The dynamics, reward, reset distribution, observation and 200-step time limit are those
of gymnasium's ``Pendulum-v1`` (``g=10``, ``m=l=1``, ``dt=0.05``, speed clipped to 8,
torque to 2; cost ``angle_normalize(th)**2 + 0.1 * thdot**2 + 0.001 * u**2``). All
``batch_size`` pendulums advance in one vectorized torch call, on any device.

The env is stateless-capable: its state (``"th"``, ``"thdot"`` and the episode's step
count ``"steps"``) is declared in ``state_spec`` and written into every TensorDict it
returns; ``step`` reads the state from its input when it is there, so a step is a pure
function of the TensorDict (handy for planning, or to restart from a saved state).

Examples:
    >>> env = PendulumEnv(batch_size=[4])
    >>> env.set_seed(0)
    1
    >>> ro = env.rollout(3)
    >>> ro["next", "observation"].shape
    torch.Size([4, 3, 3])
    >>> from tdrl.envs.libs.gym import GymEnv
    >>> env.observation_spec["observation"] == GymEnv("Pendulum-v1").observation_spec["observation"].expand(4, 3)
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_unchecked
from tdrl.envs.common import EnvBase
from tdrl.specs import Bounded, Composite, Unbounded

__all__ = ["PendulumEnv", "angle_normalize"]

_STATE_KEYS = ("th", "thdot", "steps")


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles into ``[-pi, pi)``.

    Examples:
        >>> angle_normalize(torch.tensor([3 * math.pi / 2]))
        tensor([-1.5708])
    """
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


class PendulumEnv(EnvBase):
    """Gymnasium's ``Pendulum-v1`` written in torch: ``batch_size`` pendulums stepped at once.

    Swing a pendulum up and keep it upright. Observation ``[cos th, sin th, thdot]``
    (float32, in ``[-1, -1, -8] .. [1, 1, 8]``), action a torque in ``[-2, 2]`` (float32,
    shape ``[*B, 1]``), reward ``-(angle_normalize(th)**2 + 0.1 thdot**2 + 0.001 u**2)``.
    Episodes start from ``th ~ U(-pi, pi)``, ``thdot ~ U(-1, 1)`` and are truncated (never
    terminated) after ``max_episode_steps`` steps.

    Args:
        batch_size: the number of pendulums, e.g. ``[1024]`` (``[]`` for one).
        device: where the state lives and the dynamics run.
        g: gravity (gymnasium's ``g`` argument).
        max_episode_steps: the time limit (gymnasium's ``TimeLimit``); ``None`` = no limit.
        dtype: precision of the state ``"th"``/``"thdot"`` and of the dynamics.
            float64 (the default, as in gymnasium) keeps a rollout within 1e-5 of
            ``Pendulum-v1``'s; float32 is faster on GPUs with little float64 throughput.

    Raises:
        ValueError: for a non-positive ``max_episode_steps`` or a non-float ``dtype``.

    Examples:
        >>> env = PendulumEnv()
        >>> td = env.reset()
        >>> sorted(td.keys())
        ['done', 'observation', 'steps', 'terminated', 'th', 'thdot', 'truncated']
        >>> td["action"] = torch.zeros(1)
        >>> env.step(td)["next", "steps"]
        tensor([1])
    """

    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    m: float = 1.0
    l: float = 1.0  # noqa: E741 - the pendulum's length, named as in gymnasium

    def __init__(
        self,
        batch_size: torch.Size | tuple | list | None = None,
        device: torch.device | str | None = None,
        g: float = 10.0,
        max_episode_steps: int | None = 200,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"PendulumEnv: max_episode_steps must be >= 1 or None, got {max_episode_steps}.")
        if not dtype.is_floating_point:
            raise ValueError(f"PendulumEnv: dtype must be a float dtype (torch.float64 or torch.float32), got {dtype}.")
        self.g = float(g)
        self.max_episode_steps = max_episode_steps
        self.dtype = dtype
        b, dev = self.batch_size, self.device
        high = torch.tensor([1.0, 1.0, self.max_speed])
        self.observation_spec = Composite(
            observation=Bounded(-high.expand(*b, 3), high.expand(*b, 3), shape=(*b, 3), device=dev), shape=b
        )
        self.action_spec = Bounded(-self.max_torque, self.max_torque, shape=(*b, 1), device=dev)
        self.reward_spec = Unbounded(shape=(*b, 1), device=dev)
        self.state_spec = Composite(
            th=Unbounded(shape=(*b, 1), dtype=dtype, device=dev),
            thdot=Bounded(-self.max_speed, self.max_speed, shape=(*b, 1), dtype=dtype, device=dev),
            steps=Unbounded(shape=(*b, 1), dtype=torch.int64, device=dev),
            shape=b,
        )
        self.rng = torch.Generator(device=dev)
        self.rng.seed()
        # the last state written, used when a step's input does not carry the state
        self._state: dict[str, torch.Tensor] = {
            "th": torch.zeros((*b, 1), dtype=dtype, device=dev),
            "thdot": torch.zeros((*b, 1), dtype=dtype, device=dev),
            "steps": torch.zeros((*b, 1), dtype=torch.int64, device=dev),
        }
        self._false = torch.zeros((*b, 1), dtype=torch.bool, device=dev)
        self._reset_high = torch.tensor([math.pi, 1.0], dtype=dtype, device=dev)

    # --- the dynamics (pure functions of tensors) -----------------------------------------
    def dynamics(
        self, th: torch.Tensor, thdot: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of ``Pendulum-v1``: ``(th, thdot, torque) -> (new_th, new_thdot, reward)``.

        Examples:
            >>> env = PendulumEnv()
            >>> zero = torch.zeros(1, dtype=torch.float64)
            >>> env.dynamics(zero, zero, zero)  # upright and still: stays there, no cost
            (tensor([0.], dtype=torch.float64), tensor([0.], dtype=torch.float64), tensor([-0.], dtype=torch.float64))
        """
        u_cost, u_accel = self._torque_terms(u, th.dtype)
        new_th, new_thdot = self._advance(th, thdot, u_accel)
        return new_th, new_thdot, self._reward(th, thdot, u_cost)

    def _torque_terms(self, u: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The torque's cost and acceleration. As in gymnasium, both are computed in the action's
        precision (float32) and then added to the state's: this keeps rollouts within 1e-5 of gymnasium's."""
        u = u.clamp(-self.max_torque, self.max_torque)
        return (0.001 * u.square()).to(dtype), ((3.0 / (self.m * self.l**2)) * u).to(dtype)

    def _advance(
        self, th: torch.Tensor, thdot: torch.Tensor, u_accel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        accel = (3.0 * self.g / (2.0 * self.l)) * torch.sin(th) + u_accel
        new_thdot = (thdot + accel * self.dt).clamp(-self.max_speed, self.max_speed)
        return th + new_thdot * self.dt, new_thdot

    @staticmethod
    def _reward(th: torch.Tensor, thdot: torch.Tensor, u_cost: torch.Tensor) -> torch.Tensor:
        return -(angle_normalize(th).square() + 0.1 * thdot.square() + u_cost)

    @staticmethod
    def observe(th: torch.Tensor, thdot: torch.Tensor) -> torch.Tensor:
        """The observation ``[cos th, sin th, thdot]`` (float32) of a state."""
        return torch.cat([torch.cos(th), torch.sin(th), thdot], -1).to(torch.float32)

    # --- EnvBase ---------------------------------------------------------------------------
    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self.rng.seed()
        else:
            self.rng.manual_seed(int(seed))

    def _state_from(self, tensordict: TensorDictBase | None) -> dict[str, torch.Tensor]:
        if tensordict is None:
            return self._state
        return {key: tensordict.get(key, self._state[key]) for key in _STATE_KEYS}

    def _fresh_state(self, mask: torch.Tensor | None, old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A new episode's state where ``mask`` ([*B, 1]) is set (everywhere when None), ``old`` elsewhere."""
        b = self.batch_size
        draw = torch.rand((*b, 2), generator=self.rng, dtype=self.dtype, device=self.device)
        th, thdot = ((2 * draw - 1) * self._reset_high).split(1, -1)
        steps = torch.zeros((*b, 1), dtype=torch.int64, device=self.device)
        if mask is not None and b:
            th = torch.where(mask, th, old["th"])
            thdot = torch.where(mask, thdot, old["thdot"])
            steps = torch.where(mask, steps, old["steps"])
        return {"th": th, "thdot": thdot, "steps": steps}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = tensordict.get("_reset", None) if tensordict is not None else None
        state = self._fresh_state(mask, self._state_from(tensordict))
        self._state = state
        return td_unchecked(
            {"observation": self.observe(state["th"], state["thdot"]), **state}, self.batch_size, self.device
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        state = self._state_from(tensordict)
        th, thdot, reward = self.dynamics(state["th"], state["thdot"], tensordict.get("action"))
        steps = state["steps"] + 1
        truncated = self._false if self.max_episode_steps is None else steps >= self.max_episode_steps
        self._state = {"th": th, "thdot": thdot, "steps": steps}
        return td_unchecked(
            {
                "observation": self.observe(th, thdot),
                "reward": reward.to(torch.float32),
                "done": truncated,
                "terminated": self._false.clone(),
                "truncated": truncated.clone(),
                "th": th,
                "thdot": thdot,
                "steps": steps,
            },
            self.batch_size,
            self.device,
        )

    def _rollout_fast(self, td: TensorDictBase, max_steps: int, break_when_any_done: bool) -> TensorDictBase | None:
        """A policy-free rollout on plain tensors (no per-step TensorDict).

        Runs when ``td`` holds only what ``reset`` writes; returns None otherwise so that the
        generic loop runs. Random actions are drawn from the action spec, all steps at once;
        the loop only advances the state, and the observations, rewards and torque terms are
        computed once for the whole rollout, on the stacked states.
        """
        if set(td.keys()) != {"observation", *_STATE_KEYS, *self.done_keys}:
            return None
        nb, limit = self.batch_dims, self.max_episode_steps
        actions = self.full_action_spec["action"].rand((max_steps,)).movedim(0, nb)  # [*B, T, 1]
        u_cost, u_accel = self._torque_terms(actions, self.dtype)
        state = {key: td.get(key) for key in _STATE_KEYS}
        root: dict[str, list] = {key: [] for key in _STATE_KEYS}
        nxt: dict[str, list] = {key: [] for key in (*_STATE_KEYS, "truncated")}
        for t in range(max_steps):
            for key in _STATE_KEYS:
                root[key].append(state[key])
            th, thdot = self._advance(state["th"], state["thdot"], u_accel.select(nb, t))
            new = {"th": th, "thdot": thdot, "steps": state["steps"] + 1}
            truncated = self._false if limit is None else new["steps"] >= limit
            for key in _STATE_KEYS:
                nxt[key].append(new[key])
            nxt["truncated"].append(truncated)
            state = self._state = new
            if limit is not None and bool(truncated.any()):
                if break_when_any_done:
                    break
                state = self._fresh_state(truncated, new)
        n = len(root["th"])
        batch = torch.Size((*self.batch_size, n))
        root_t = {key: torch.stack(value, nb) for key, value in root.items()}
        next_t = {key: torch.stack(value, nb) for key, value in nxt.items()}
        trunc = next_t.pop("truncated")
        false = torch.zeros_like(trunc)
        time = (slice(None),) * nb + (slice(0, n),)
        next_td = td_unchecked(
            {
                **next_t,
                "observation": self.observe(next_t["th"], next_t["thdot"]),
                "reward": self._reward(root_t["th"], root_t["thdot"], u_cost[time]).to(torch.float32),
                "done": trunc,
                "terminated": false,
                "truncated": trunc.clone(),
            },
            batch,
            self.device,
        )
        return td_unchecked(
            {
                **root_t,
                "observation": self.observe(root_t["th"], root_t["thdot"]),
                "action": actions[time].contiguous(),
                "done": false.clone(),
                "terminated": false.clone(),
                "truncated": false.clone(),
                "next": next_td,
            },
            batch,
            self.device,
        )

    def __repr__(self) -> str:
        return (
            f"PendulumEnv(batch_size={tuple(self.batch_size)}, device={self.device}, g={self.g}, "
            f"max_episode_steps={self.max_episode_steps}, dtype={self.dtype})"
        )
