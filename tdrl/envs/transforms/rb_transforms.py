"""Transforms for sampled data: RandomCropTensorDict (sub-trajectories of sampled trajectories)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _unravel
from tdrl.specs import NestedKey

__all__ = ["RandomCropTensorDict"]


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
