"""VIPTransform: embed pixel observations with the VIP visual encoder (a ResNet-50)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from tdrl.envs.transforms._embedding import _EncoderNet, _PretrainedEncoder
from tdrl.specs import NestedKey

__all__ = ["VIPTransform"]

_VIP_URL = "https://pytorch.s3.amazonaws.com/models/rl/vip/model.pt"
_VIP_DIM = 1024


class _VIPNet(_EncoderNet):
    """VIP's network step: a ResNet-50 whose classifier is replaced by a 2048 -> 1024 linear layer."""

    label = "VIPTransform"
    checkpoint_root = "vip"
    models: ClassVar[dict[str, str]] = {"resnet50": "vip_50"}

    def _head(self, features: int) -> nn.Module:
        return nn.Linear(features, _VIP_DIM)

    def _outdim(self, features: int) -> int:
        return _VIP_DIM

    def _url(self) -> str:
        return _VIP_URL


class VIPTransform(_PretrainedEncoder):
    """Embed pixel observations with VIP, a ResNet-50 pretrained as a goal-conditioned value.

    VIP (Ma et al., 2023, "Towards Universal Visual Reward and Representation via
    Value-Implicit Pre-Training") trains on Ego4D videos so that distances between
    embeddings behave like values. This transform turns ``uint8 [*, H, W, 3]`` frames into
    a ``[*, 1024]`` embedding, with the same steps as :class:`R3MTransform` (scale to
    ``[0, 1]`` channels-first, ImageNet normalization, antialiased resize to
    ``size x size``, the network without gradients); the raw frames are removed.

    Args:
        model_name: ``"resnet50"`` (the only published VIP model).
        in_keys: the pixel entries (default ``["pixels"]``).
        out_keys: where the embeddings go (default ``["vip_vec"]``, or
            ``["vip_vec_0", ...]`` with ``stack_images=False``).
        size: the side of the square image the network sees (default 244, as TorchRL).
        stack_images: with several ``in_keys``, embed them as one stack and write the
            embeddings concatenated in one entry; ``False`` writes one entry per image.
        download: ``True`` loads the published VIP weights (fetched once through ``torch.hub``
            from ``https://pytorch.s3.amazonaws.com/models/rl/vip/model.pt``, then cached); a
            torchvision weights name (``"IMAGENET1K_V1"``) loads torchvision's ImageNet
            backbone (needs torchvision); ``False`` (default) keeps random weights.
        download_path: the directory where ``torch.hub`` caches the weights.
        tensor_pixels_keys: keep each in_key's raw frames under these names (one per in_key).

    Raises:
        ValueError: for an unknown ``model_name`` or keys of the wrong length; when attached,
            for an in_key that is not an RGB image.
        RuntimeError: with ``download=True``, when the weights cannot be fetched (names the URL).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.envs import VIPTransform
        >>> vip = VIPTransform("resnet50", size=32)
        >>> frames = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
        >>> vip(TensorDict({"pixels": frames}, [2]))["vip_vec"].shape
        torch.Size([2, 1024])
    """

    label = "VIPTransform"
    prefix = "vip"
    net_class = _VIPNet

    def __init__(
        self,
        model_name: str,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        size: int = 244,
        stack_images: bool = True,
        download: Any = False,
        download_path: str | None = None,
        tensor_pixels_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(
            model_name,
            in_keys=in_keys,
            out_keys=out_keys,
            size=size,
            stack_images=stack_images,
            download=download,
            download_path=download_path,
            tensor_pixels_keys=tensor_pixels_keys,
        )
