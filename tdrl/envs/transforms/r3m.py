"""R3MTransform: embed pixel observations with the R3M visual encoder (a ResNet)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from tdrl.envs.transforms._embedding import _EncoderNet, _PretrainedEncoder
from tdrl.specs import NestedKey

__all__ = ["R3MTransform"]

_R3M_URL = "https://pytorch.s3.amazonaws.com/models/rl/r3m/{name}.pt"


class _R3MNet(_EncoderNet):
    """R3M's network step: a ResNet without its classifier (512 features for 18/34, 2048 for 50)."""

    label = "R3MTransform"
    checkpoint_root = "r3m"
    models: ClassVar[dict[str, str]] = {"resnet18": "r3m_18", "resnet34": "r3m_34", "resnet50": "r3m_50"}

    def _head(self, features: int) -> nn.Module:
        return nn.Identity()

    def _outdim(self, features: int) -> int:
        return features

    def _url(self) -> str:
        return _R3M_URL.format(name=self.models[self.model_name])


class R3MTransform(_PretrainedEncoder):
    """Embed pixel observations with R3M, a ResNet pretrained for robot manipulation.

    R3M (Nair et al., 2022, https://arxiv.org/abs/2203.12601) trains a ResNet on Ego4D
    videos so that its features serve as a state for control. This transform turns
    ``uint8 [*, H, W, 3]`` frames into an ``[*, D]`` embedding (``D`` = 512 for
    ResNet-18/34, 2048 for ResNet-50): it scales them to ``[0, 1]`` channels-first,
    normalizes with ImageNet's mean and std, resizes to ``size x size`` (antialiased, as
    torchvision does) and runs the network (without gradients unless ``requires_grad``).
    The raw frames are removed from the output. It is a :class:`Compose` of those steps, so
    ``transform[-1]`` is the network step and ``transform[-1].convnet`` the ResNet.

    Like every tdrl transform, called on a TensorDict it maps the root and its ``"next"``
    entry; inside a policy (``TensorDictSequential(r3m, actor)``) it reads the root only.

    Its modules start in eval mode (batch-norm uses its running statistics); ``.train()``
    makes the batch-norm layers use batch statistics and update them, as when fine-tuning.

    Args:
        model_name: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        in_keys: the pixel entries (default ``["pixels"]``).
        out_keys: where the embeddings go (default ``["r3m_vec"]``, or
            ``["r3m_vec_0", "r3m_vec_1", ...]`` with ``stack_images=False``).
        size: the side of the square image the network sees (default 244, as TorchRL).
        stack_images: with several ``in_keys``, embed them as one stack and write the
            embeddings concatenated in a single entry (``[*, n * D]``, in sorted key order);
            ``False`` writes one entry per image.
        download: ``True`` loads the published R3M weights (fetched once through
            ``torch.hub`` from ``https://pytorch.s3.amazonaws.com/models/rl/r3m/``, then cached);
            a torchvision weights name or member (``"IMAGENET1K_V1"``) loads torchvision's
            ImageNet weights (needs torchvision, ``pip install 'tdrl[vision]'``);
            ``False`` (default) keeps randomly initialised weights.
        download_path: the directory where ``torch.hub`` caches the weights (default its own cache).
        tensor_pixels_keys: keep each in_key's raw frames under these names (one per in_key).
        requires_grad: let gradients flow through the network (fine-tuning); by default it
            runs under ``torch.no_grad()``.

    Raises:
        ValueError: for an unknown ``model_name``, ``out_keys`` or ``tensor_pixels_keys`` of the
            wrong length, or a size below 1; when attached, for an in_key that is not an RGB image.
        RuntimeError: with ``download=True``, when the weights cannot be fetched (names the URL).
        ImportError: with torchvision weights but no working torchvision.

    Examples:
        >>> import torch
        >>> from tdrl.envs import R3MTransform, TransformedEnv
        >>> from tdrl.testing.transform_contract import TransformTestEnv
        >>> r3m = R3MTransform("resnet18", in_keys=["pixels"], size=32)
        >>> env = TransformedEnv(TransformTestEnv(pixels=(16, 16)), r3m)
        >>> env.observation_spec["r3m_vec"].shape
        torch.Size([512])
        >>> env.rollout(2, break_when_any_done=False)["next", "r3m_vec"].shape
        torch.Size([2, 512])
    """

    label = "R3MTransform"
    prefix = "r3m"
    net_class = _R3MNet

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
        requires_grad: bool = False,
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
            requires_grad=requires_grad,
        )
