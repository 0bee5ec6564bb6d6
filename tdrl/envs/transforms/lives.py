"""EndOfLifeTransform: flag the step where a game with several lives loses one (Atari's ``ale.lives()``).

DeepMind's DQN treats the loss of a life as the end of an episode for value estimation,
while the env keeps playing until the game is over. The transform writes that signal
beside the done flags (not in the done spec, so the env does not reset on it); a loss
reads it in place of ``"done"``/``"terminated"`` (``transform.register_keys(loss)``).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"lives": torch.tensor([3, 3, 2]), "next": {"lives": torch.tensor([3, 2, 2]),
    ...     "done": torch.tensor([[False], [False], [True]])}}, [3])
    >>> EndOfLifeTransform()(td)["next", "end-of-life"].squeeze(-1)
    tensor([False,  True,  True])
"""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.step import _trajectory_starts
from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["EndOfLifeTransform"]

_NO_PARENT = (
    "EndOfLifeTransform reads the number of lives from the env it is attached to; it has none. "
    "Fix: use it inside TransformedEnv(env, EndOfLifeTransform()), or call it on data holding {key!r}."
)


def _expand_right(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` ([*B]) with trailing dims of size 1 added and expanded to ``like``'s shape."""
    while value.ndim < like.ndim:
        value = value.unsqueeze(-1)
    return value.expand_as(like)


class EndOfLifeTransform(Transform):
    """Write an end-of-life flag, set at the steps where the game loses a life (or the episode ends).

    At each step the transform reads the env's number of lives (``eol_attribute``, e.g. the
    gymnasium env's ``unwrapped.ale.lives``), writes it under ``lives_key`` and writes
    ``eol_key = (lives before > lives now) | done``. At reset the flag is False.

    Args:
        eol_key: where the end-of-life flag goes (default ``"end-of-life"``).
        lives_key: where the number of lives goes (default ``"lives"``).
        done_key: the done flag of the env (its shape is the flag's; default ``"done"``).
        eol_attribute: the dotted path of the lives counter on the base env (an int, a
            tensor or a callable returning one); a path the tdrl env does not have is
            looked up on the simulator it wraps (``env.env`` for gymnasium).

    Raises:
        RuntimeError: when reset or stepped without a parent env.
        AttributeError: when the base env (and the simulator it wraps) has no ``eol_attribute``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> class Game(CountingEnv):  # loses a life every other step
        ...     def lives(self):
        ...         return 3 - int(self.count.item()) // 2
        >>> env = TransformedEnv(Game(max_steps=6), EndOfLifeTransform(eol_attribute="lives"))
        >>> ro = env.rollout(5)
        >>> ro["next", "lives"], ro["next", "end-of-life"].squeeze(-1)
        (tensor([3, 2, 2, 1, 1]), tensor([False,  True, False,  True, False]))
    """

    def __init__(
        self,
        eol_key: NestedKey = "end-of-life",
        lives_key: NestedKey = "lives",
        done_key: NestedKey = "done",
        eol_attribute: str = "unwrapped.ale.lives",
    ) -> None:
        super().__init__(in_keys=[done_key], out_keys=[eol_key])
        self.eol_key = eol_key
        self.lives_key = lives_key
        self.done_key = done_key
        self.eol_attribute = eol_attribute.split(".")

    # the flag compares the lives read from the simulator with the last step's: stepping only
    time_vectorizable = False

    def _rewritten_keys(self) -> set:
        return {self.eol_key, self.lives_key}

    def _base_env(self) -> Any:
        env = self._env_of_chain()
        if env is None:
            raise RuntimeError(_NO_PARENT.format(key=self.lives_key))
        return env.base_env

    def _get_lives(self, batch_size: torch.Size, device: torch.device) -> torch.Tensor:
        base = self._base_env()
        first = self.eol_attribute[0]
        try:
            lives = getattr(base, first)
        except AttributeError:
            inner = getattr(base, "env", None)  # the simulator a wrapper holds (GymWrapper.env)
            if inner is None or not hasattr(inner, first):
                raise AttributeError(
                    f"EndOfLifeTransform: the base env {type(base).__name__} has no attribute {first!r} "
                    f"(eol_attribute={'.'.join(self.eol_attribute)!r}). Fix: pass eol_attribute, the dotted path of "
                    "the lives counter on the env (e.g. 'unwrapped.ale.lives' for an Atari gymnasium env)."
                ) from None
            lives = getattr(inner, first)
        for name in self.eol_attribute[1:]:
            lives = [getattr(x, name) for x in lives] if isinstance(lives, list) else getattr(lives, name)
        if callable(lives):
            lives = lives()
        elif isinstance(lives, list):
            lives = [x() if callable(x) else x for x in lives]
        return torch.as_tensor(lives, dtype=torch.int64, device=device).reshape(batch_size)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        done = tensordict_reset.get(self.done_key)
        lives = self._get_lives(done.shape[: tensordict_reset.batch_dims], done.device)
        tensordict_reset.set(self.eol_key, torch.zeros_like(done))
        tensordict_reset.set(self.lives_key, lives)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        done = next_tensordict.get(self.done_key, None)
        if done is None:
            raise KeyError(
                f"EndOfLifeTransform: the step wrote no done flag {self.done_key!r} (keys "
                f"{sorted(map(str, next_tensordict.keys(True, True)))}). Fix: pass done_key naming the env's done flag."
            )
        before = tensordict.get(self.lives_key, None)
        if before is None:
            raise KeyError(
                f"EndOfLifeTransform: the tensordict passed to step has no {self.lives_key!r}, which reset writes. "
                "Fix: start from td = env.reset() and move on with step_mdp (or env.step_and_maybe_reset)."
            )
        lives = self._get_lives(before.shape, before.device)
        next_tensordict.set(self.eol_key, _expand_right(before > lives, done) | done)
        next_tensordict.set(self.lives_key, lives)
        return next_tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Recompute the flags of stored steps (time along the last batch dim) from their lives and done flags.

        Raises:
            KeyError: when the data lacks the lives at the root or under ``"next"``.
        """
        nxt = tensordict.get("next", None)
        before = tensordict.get(self.lives_key, None)
        after = nxt.get(self.lives_key, None) if nxt is not None else None
        if before is None or after is None:
            raise KeyError(
                f"EndOfLifeTransform.forward reads {self.lives_key!r} at the root and under 'next' (written when the "
                f"data was collected with the transform); the tensordict has keys "
                f"{sorted(map(str, tensordict.keys(True, True)))}."
            )
        nxt = cast(TensorDictBase, nxt)
        done = nxt.get(self.done_key)
        flag = _expand_right(before > after, done) | done
        nxt.set(self.eol_key, flag)
        starts, tdim = _trajectory_starts(tensordict, "EndOfLifeTransform")
        previous = flag.roll(1, tdim)
        tensordict.set(self.eol_key, torch.where(_expand_right(starts, flag), torch.zeros_like(flag), previous))
        return tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return observation_spec

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        done_spec = cast(TensorSpec, cast(Composite, output_spec["full_done_spec"])[self.done_key])
        observations = cast(Composite, output_spec["full_observation_spec"])
        observations[self.eol_key] = done_spec.clone()
        observations[self.lives_key] = Unbounded(shape=output_spec.shape, dtype=torch.int64, device=done_spec.device)
        return output_spec

    def register_keys(self, loss_or_advantage: Any) -> None:
        """Have a loss (or value estimator) read the end-of-life flag as its ``done`` and ``terminated``."""
        loss_or_advantage.set_keys(done=self.eol_key, terminated=self.eol_key)

    def _extra_repr(self) -> str:
        return f"eol_key={self.eol_key!r}, lives_key={self.lives_key!r}, done_key={self.done_key!r}"
