"""Replay-buffer transforms: RandomCropTensorDict (sub-trajectories of sampled trajectories) and
MultiStepTransform (n-step transitions, written across successive ``extend`` calls)."""

from __future__ import annotations

from typing import cast

import torch
from tensordict import TensorDictBase

from tdrl.data.postprocs import MultiStep
from tdrl.envs.transforms.next_obs import NextStateReconstructor  # TorchRL's path for it
from tdrl.envs.transforms.transforms import Transform, _unravel
from tdrl.specs import Composite, NestedKey

__all__ = ["RandomCropTensorDict", "MultiStepTransform", "NextStateReconstructor"]

_HELD_MISMATCH = (
    "MultiStepTransform: this batch has batch_size {new} but the {held} steps held from the previous extend have "
    "{old}; successive extends must continue the same envs (time along the last batch dim, the same leading "
    "dims). Fix: extend with the collector's successive batches, or use one MultiStepTransform per stream."
)


class RandomCropTensorDict(Transform):
    """Cuts a random window of ``sub_seq_len`` steps out of each sampled trajectory.

    For a batch of trajectories (time along ``sample_dim``), each trajectory gets its own
    start, drawn uniformly among those that keep the window inside it. With ``mask_key``
    (a mask that is true on a trajectory's valid steps, then false: e.g. the
    ``("collector", "mask")`` of padded trajectories), the window stays among the valid
    steps. Use it in a replay buffer that stores whole trajectories; it is not an env
    transform.

    tdrl draws the start among all ``T - sub_seq_len + 1`` positions; TorchRL 0.14.1 never
    draws the last one (and fails when ``T == sub_seq_len``).

    Args:
        sub_seq_len: the length of the windows.
        sample_dim: the batch dim along which to crop (negative: counted from the end).
        mask_key: the entry holding the valid-step mask (``None``: every step is valid).

    Raises:
        ValueError: for ``sub_seq_len < 1``, or (when called) a trajectory shorter than
            ``sub_seq_len``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import ReplayBuffer, LazyTensorStorage
        >>> trajectories = TensorDict({"step": torch.arange(10).expand(4, 10)}, [4, 10])
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(4), transform=RandomCropTensorDict(3))
        >>> _ = rb.extend(trajectories)
        >>> crop = rb.sample(2)["step"]
        >>> crop.shape, bool((crop.diff(dim=-1) == 1).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, sub_seq_len: int, sample_dim: int = -1, mask_key: NestedKey | None = None) -> None:
        if isinstance(sub_seq_len, bool) or not isinstance(sub_seq_len, int) or sub_seq_len < 1:
            raise ValueError(f"RandomCropTensorDict: sub_seq_len must be a positive integer, got {sub_seq_len!r}")
        super().__init__()
        self.sub_seq_len = sub_seq_len
        self.sample_dim = sample_dim
        self.mask_key = None if mask_key is None else _unravel(mask_key)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A new TensorDict holding one window per trajectory."""
        if tensordict.batch_dims == 0:
            raise ValueError("RandomCropTensorDict: got a TensorDict without batch dims; it crops trajectories")
        dim = self.sample_dim % tensordict.batch_dims
        steps = tensordict.batch_size[dim]
        shape = list(tensordict.batch_size)
        shape[dim] = 1
        device = tensordict.device if tensordict.device is not None else torch.device("cpu")
        mask = None if self.mask_key is None else tensordict.get(self.mask_key, None)
        if mask is None:
            lengths = torch.full(shape, steps, device=device)
        else:
            if mask.shape != tensordict.batch_size:
                raise ValueError(
                    f"RandomCropTensorDict: the mask {self.mask_key!r} has shape {list(mask.shape)}, expected "
                    f"the batch size {list(tensordict.batch_size)}"
                )
            lengths = mask.sum(dim, keepdim=True)
        shortest = int(lengths.min())
        if shortest < self.sub_seq_len:
            raise ValueError(
                f"RandomCropTensorDict: cannot cut windows of {self.sub_seq_len} steps from a trajectory of "
                f"{shortest} valid steps (along dim {self.sample_dim} of batch_size "
                f"{list(tensordict.batch_size)}); lower sub_seq_len or store longer trajectories"
            )
        room = lengths - self.sub_seq_len + 1
        start = (torch.rand(shape, device=device, dtype=torch.float64) * room).long().clamp_max(room - 1)
        offsets = torch.arange(self.sub_seq_len, device=device).view([-1 if d == dim else 1 for d in range(len(shape))])
        return tensordict.gather(dim=dim, index=start + offsets)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        raise TypeError(
            "RandomCropTensorDict crops sampled trajectories: use it as a replay-buffer transform, not on an env"
        )

    def _extra_repr(self) -> str:
        return f"sub_seq_len={self.sub_seq_len}, sample_dim={self.sample_dim}, mask_key={self.mask_key!r}"


class MultiStepTransform(Transform):
    """n-step transitions written to a replay buffer, with the steps at a batch's end held for the next.

    In a replay buffer (``ReplayBuffer(transform=MultiStepTransform(n_steps, gamma))``), each
    ``extend`` receives the next piece of a stream of steps (a collector batch, time along
    the last batch dim). The transform joins it to the ``n_steps`` steps it held back from
    the previous piece, rewrites the steps as :class:`~tdrl.data.postprocs.MultiStep` does
    (``("next", "reward")`` summed and discounted over up to ``n_steps`` steps, the other
    ``"next"`` entries taken from the last step summed, plus ``"steps_to_next_obs"``,
    ``"gamma"``, ``"nonterminal"`` and ``("next", "original_reward")``), writes all but the
    last ``n_steps`` and holds those back. So every written step has its full window (or
    its episode's end), even at the seam between two collector batches, where the
    post-processor :class:`~tdrl.data.postprocs.MultiStep` gives the last steps of each
    batch shorter windows. The first ``extend`` writes ``n_steps`` fewer steps than it is
    given (none when it is given ``n_steps`` or fewer); the last steps held are never
    written. Sampling returns the stored transitions unchanged. As TorchRL's, and with
    :class:`~tdrl.data.postprocs.MultiStep`'s documented difference on
    ``("next", "terminated")``.

    tdrl's storages index items along the first dim: give the transform time-major pieces
    ``[T]`` of an unbatched env; for a batched env (``[B, T]`` pieces), apply it yourself
    and write the flattened result, ``rb.extend(transform.inv(batch).reshape(-1))``.

    Args:
        n_steps: the longest look-ahead (may be changed between extends).
        gamma: discount factor, in ``(0, 1]``.

    Keyword Args:
        reward_keys: the ``"next"`` rewards to sum (default ``["reward"]``); for a group of
            agents, ``[("agents", "reward")]`` sums each agent's rewards (``[T, n_agents, 1]``).
        done_key: the end-of-episode flag (default ``"done"``).
        done_keys: the ``"next"`` flags left in place (default done, truncated, terminated).
        mask_key: a mask of the valid steps (default ``"mask"``).

    Raises:
        ValueError: for ``n_steps < 1`` or ``gamma`` outside ``(0, 1]``; when attached to an
            env; when a piece does not continue the held steps (other leading dims).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, ReplayBuffer
        >>> def piece(start, steps):
        ...     t = torch.arange(start, start + steps, dtype=torch.float32).unsqueeze(-1)
        ...     flags = torch.zeros(steps, 1, dtype=torch.bool)
        ...     return TensorDict({"observation": t, "next": {"observation": t + 1, "reward": torch.ones(steps, 1),
        ...         "done": flags, "terminated": flags, "truncated": flags}}, [steps])
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStepTransform(n_steps=3, gamma=0.5))
        >>> len(rb.extend(piece(0, 4))), len(rb.extend(piece(4, 4)))
        (1, 4)
        >>> rb[:]["next", "reward"].flatten().tolist()  # steps 0 to 4: each sums 3 rewards, seam included
        [1.75, 1.75, 1.75, 1.75, 1.75]
        >>> rb[:]["next", "observation"].flatten().tolist()
        [3.0, 4.0, 5.0, 6.0, 7.0]
    """

    _multi_step: MultiStep  # kept out of the module tree (see the n_steps setter)

    def __init__(
        self,
        n_steps: int,
        gamma: float,
        *,
        reward_keys: list[NestedKey] | None = None,
        done_key: NestedKey | None = None,
        done_keys: list[NestedKey] | None = None,
        mask_key: NestedKey | None = None,
    ) -> None:
        super().__init__()
        self.reward_keys = ["reward"] if reward_keys is None else [_unravel(k) for k in reward_keys]
        self.done_key = "done" if done_key is None else _unravel(done_key)
        self.done_keys = ["done", "truncated", "terminated"] if done_keys is None else [_unravel(k) for k in done_keys]
        self.mask_key = "mask" if mask_key is None else _unravel(mask_key)
        self._gamma = gamma
        self.n_steps = n_steps  # builds the MultiStep that computes the transitions
        self._held: TensorDictBase | None = None

    @property
    def n_steps(self) -> int:
        """The look-ahead; setting it applies from the next ``extend`` on."""
        return self._multi_step.n_steps

    @n_steps.setter
    def n_steps(self, value: int) -> None:
        multi_step = MultiStep(self._gamma, value)  # validates n_steps and gamma
        multi_step.reward_keys = tuple(self.reward_keys)
        multi_step.done_key = self.done_key
        multi_step.done_keys = tuple(self.done_keys)
        multi_step.mask_key = self.mask_key
        self.__dict__["_multi_step"] = multi_step  # not a submodule: no state of its own (TorchRL's has none)

    @property
    def gamma(self) -> float:
        """The discount factor."""
        return self._gamma

    def _has_inverse(self) -> bool:
        return True  # the work happens on write, in the replay buffer's inverse pass

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.batch_dims < 1:
            raise ValueError(
                f"MultiStepTransform: got batch_size {list(tensordict.batch_size)}; it needs a piece of a stream of "
                "steps, time along the last batch dim (a collector batch)."
            )
        held = self._held
        if held is None:
            stream = tensordict
        elif held.batch_size[:-1] != tensordict.batch_size[:-1]:
            raise ValueError(
                _HELD_MISMATCH.format(
                    new=list(tensordict.batch_size), held=held.batch_size[-1], old=list(held.batch_size)
                )
            )
        else:
            # torch.cat hands TensorDicts to tensordict (__torch_function__)
            stream = cast(TensorDictBase, torch.cat(cast("list[torch.Tensor]", [held, tensordict]), -1))
        n = self.n_steps
        # a copy: the caller may change its batch before the next extend
        self._held = stream[..., -n:].clone()
        if stream.batch_size[-1] <= n:
            return stream[..., :0]
        return self._multi_step(stream)[..., :-n]

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        raise ValueError(
            "MultiStepTransform rewrites what a replay buffer writes: pass it as ReplayBuffer(transform=...), "
            "not to an env (use the post-processor tdrl.data.postprocs.MultiStep on collector batches)."
        )

    def _extra_repr(self) -> str:
        return f"n_steps={self.n_steps}, gamma={self.gamma}"
