"""RunningMeanStd: the exact mean and variance of everything seen so far, merged batch by batch.

Examples:
    >>> import torch
    >>> from tdrl.envs.transforms import RunningMeanStd
    >>> rms = RunningMeanStd(shape=(2,), epsilon=0.0)
    >>> rms.update(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> rms.mean, rms.var
    (tensor([1., 2.]), tensor([1., 1.]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["RunningMeanStd"]


class RunningMeanStd(nn.Module):
    """Running mean and (population) variance, merged per batch with the parallel-variance formula.

    The statistics are buffers (``mean``, ``var``, ``count``), so they are saved in
    ``state_dict`` and follow ``.to(device)``. ``count`` starts at ``epsilon`` (TorchRL's
    convention), which keeps the first merge finite; ``var`` starts at one.

    Args:
        shape: the feature shape (``()`` for scalars); the leading dims of an update are
            the batch.
        epsilon: the initial count.

    Raises:
        ValueError: in :meth:`update`, when the data's trailing dims are not ``shape``.

    Examples:
        >>> import torch
        >>> rms = RunningMeanStd(shape=(3,))
        >>> rms.update(torch.randn(64, 3) * 2 + 5)
        >>> rms.normalize(torch.randn(8, 3)).shape
        torch.Size([8, 3])
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: Sequence[int] | torch.Size = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(shape), dtype=torch.float32))
        self.register_buffer("var", torch.ones(tuple(shape), dtype=torch.float32))
        self.register_buffer("count", torch.tensor(float(epsilon), dtype=torch.float32))

    def update(self, x: torch.Tensor) -> None:
        """Merge a batch ``x`` of shape ``[*batch, *shape]`` into the statistics."""
        shape = self.mean.shape
        if x.shape[x.dim() - len(shape) :] != shape or x.dim() < len(shape):
            raise ValueError(
                f"RunningMeanStd.update: data of shape {tuple(x.shape)} does not end with the tracked shape "
                f"{tuple(shape)}. Fix: pass [*batch, {', '.join(map(str, shape))}] data, or build "
                f"RunningMeanStd(shape={tuple(x.shape[1:])})."
            )
        flat = x.float().reshape(-1, *shape)
        n = flat.shape[0]
        if n == 0:
            return
        batch_mean = flat.mean(0)
        batch_var = flat.var(0, unbiased=False) if n > 1 else torch.zeros_like(batch_mean)
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta * delta * (self.count * n / total)
        self.mean.add_(delta * (n / total))
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var)`` (the variance floored at 1e-8)."""
        return (x.float() - self.mean) / self.var.clamp_min(1e-8).sqrt()
