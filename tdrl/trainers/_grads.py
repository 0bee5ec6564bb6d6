"""Gradient clipping shared by the optimizer hook and the optimization steppers."""

from __future__ import annotations

import torch
from torch import nn


def clip_gradients(optimizer: torch.optim.Optimizer, clip_grad_norm: bool, clip_norm: float | None) -> float:
    """The total norm of the optimizer's gradients (before clipping), after clipping them as the Trainer says.

    ``clip_grad_norm``: rescale to a total norm of at most ``clip_norm``; else clip each
    partial derivative to ``[-clip_norm, clip_norm]``. ``clip_norm=None``: no clipping.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if clip_grad_norm and clip_norm is not None:
        return float(nn.utils.clip_grad_norm_(params, clip_norm))
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()) if grads else 0.0
    if clip_norm is not None:
        nn.utils.clip_grad_value_(params, clip_norm)
    return norm
