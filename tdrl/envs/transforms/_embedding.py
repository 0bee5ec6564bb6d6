"""What the pretrained visual encoders (R3M, VIP) share: the image pipeline and the network step.

A pretrained encoder is a :class:`~tdrl.envs.transforms.Compose` of, in TorchRL's order:
optional copies of the raw frames (``tensor_pixels_keys``), ``ToTensorImage``, an
ImageNet ``ObservationNorm``, a ``Resize`` to ``size x size``, then either one network
step per image entry, or (``stack_images`` with several entries) a stack of the images
along a new dim, one network step on the stack and a flatten of the embeddings.
The layout, and so the ``state_dict`` keys, are TorchRL's.

The network step (:class:`_EncoderNet`) holds a ResNet (``tdrl.envs.transforms._resnet``,
torchvision's parameter names) whose weights come from the published checkpoint
(``download=True``, fetched and cached by ``torch.hub``), from torchvision's ImageNet
weights (``download="IMAGENET1K_V1"`` or a torchvision ``WeightsEnum``) or stay random.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from tdrl._compat import td_read, td_write
from tdrl.envs.transforms._resnet import resnet
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.image import Resize, ToTensorImage
from tdrl.envs.transforms.keys import CatTensors, UnsqueezeTransform
from tdrl.envs.transforms.norm import ObservationNorm
from tdrl.envs.transforms.shape import FlattenObservation
from tdrl.envs.transforms.transforms import Transform, _leaf
from tdrl.specs import Composite, NestedKey, Unbounded

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_DOWNLOAD_FAILED = (
    "{label}: could not fetch the pretrained {model} weights from {url} ({error}). "
    "Fix: run with network access once (torch.hub caches the file in {where}), or copy that file there "
    "by hand, or pass download=False for randomly initialised weights."
)
_NO_TORCHVISION = (
    "{label}: download={download!r} asks for torchvision's ImageNet weights, but torchvision cannot be "
    "imported ({error}). Fix: pip install 'tdrl[vision]' (a torchvision built for your torch), or pass "
    "download=True for the published {label} weights."
)
_NOT_AN_IMAGE = (
    "{label}: {key!r} must hold RGB images [*, 3, H, W] when it reaches the network (uint8 frames "
    "[*, H, W, 3] from the env), got shape {shape}. Fix: pass in_keys naming RGB pixel entries."
)


def _import_torchvision_models(label: str, download: Any) -> Any:
    """torchvision.models, or an ImportError saying how to get it (a torchvision whose C++ ops do not
    match the installed torch fails to import with a RuntimeError)."""
    try:
        models = importlib.import_module("torchvision.models")
    except (ImportError, RuntimeError) as err:
        raise ImportError(_NO_TORCHVISION.format(label=label, download=download, error=err)) from err
    return models


class _ResizeLikeTorchvision(Resize):
    """``Resize`` as TorchRL's (torchvision's ``resize``): antialiased, and a no-op at the target size."""

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        if value.shape[-2:] == (self.h, self.w):
            return value
        lead = value.shape[:-3]
        flat = value.reshape(-1, *value.shape[-3:])
        antialias = self.interpolation in ("bilinear", "bicubic")
        kwargs: dict[str, Any] = {"align_corners": False, "antialias": True} if antialias else {}
        out = F.interpolate(flat, size=(self.h, self.w), mode=self.interpolation, **kwargs)
        return out.reshape(*lead, *out.shape[-3:])


class _EncoderNet(Transform):
    """The network step: ``float [*, 3, H, W]`` images -> ``[*, outdim]`` embeddings.

    Subclasses set ``label``, ``checkpoint_root`` and ``models`` and implement ``_head``,
    ``_outdim`` and ``_url``. The batch dims are flattened for the network and restored after; the
    embedding comes back on the device of the images (the spec's device).
    """

    label: ClassVar[str] = ""
    #: the entry of the published checkpoint that holds the model's state dict
    checkpoint_root: ClassVar[str] = ""
    #: model_name -> the published checkpoint's name
    models: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey],
        model_name: str,
        del_keys: bool = True,
        requires_grad: bool = False,
    ) -> None:
        if model_name not in self.models:
            raise ValueError(
                f"{self.label}: model_name {model_name!r} is not supported; expected one of {sorted(self.models)}."
            )
        super().__init__(in_keys, out_keys)
        self.model_name = model_name
        convnet = resnet(model_name)
        features = convnet.features
        convnet.fc = self._head(features)
        self.convnet = convnet
        self.outdim = self._outdim(features)
        self.del_keys = del_keys
        self.requires_grad = requires_grad

    @property
    def time_vectorizable(self) -> bool:  # type: ignore[override]  # the base's is a class flag
        """In train mode batch-norm mixes the images of a batch: a rollout is then embedded step by step."""
        return not self.training

    # --- what differs between R3M and VIP -------------------------------------------------
    def _head(self, features: int) -> nn.Module:
        raise NotImplementedError

    def _outdim(self, features: int) -> int:
        raise NotImplementedError

    def _url(self) -> str:
        raise NotImplementedError

    # --- the step ------------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            images = td_read(tensordict, in_key)
            if images is None:
                continue
            td_write(tensordict, out_key, self._embed(images, in_key))
        if self.del_keys:
            for key in self.in_keys:
                if key not in self.out_keys and td_read(tensordict, key) is not None:
                    del tensordict[key]
        return tensordict

    def _embed(self, images: torch.Tensor, key: NestedKey) -> torch.Tensor:
        if images.ndim < 3 or images.shape[-3] != 3:
            raise ValueError(_NOT_AN_IMAGE.format(label=self.label, key=key, shape=tuple(images.shape)))
        weight = self.convnet.conv1.weight
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:]).to(weight.device, weight.dtype)
        grad = contextlib.nullcontext() if self.requires_grad else torch.no_grad()
        with grad:
            out = self.convnet(flat)
        return out.reshape(*lead, out.shape[-1]).to(images.device)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        keys = [key for key in self.in_keys if key in observation_spec]
        if not keys:
            return observation_spec
        for key in keys:
            shape = _leaf(observation_spec, key).shape
            if len(shape) < 3 or shape[-3] != 3:
                raise ValueError(_NOT_AN_IMAGE.format(label=self.label, key=key, shape=tuple(shape)))
        first = _leaf(observation_spec, keys[0])
        if self.del_keys:
            for key in keys:
                if key not in self.out_keys:
                    del observation_spec[key]
        out_shape = (*first.shape[:-3], self.outdim)
        for out_key in self.out_keys:
            observation_spec[out_key] = Unbounded(
                shape=out_shape, dtype=self.convnet.conv1.weight.dtype, device=first.device
            )
        return observation_spec

    # --- weights -------------------------------------------------------------------------
    def load_weights(self, dir_prefix: str | None = None, tv_weights: Any = None) -> None:
        """Load pretrained weights into the network.

        Args:
            dir_prefix: where ``torch.hub`` caches the published checkpoint (default: its own cache).
            tv_weights: torchvision ImageNet weights instead (a ``WeightsEnum`` member or its
                name, e.g. ``"IMAGENET1K_V1"``); needs torchvision.

        Raises:
            ValueError: for both arguments at once, or an unknown torchvision weights name.
            ImportError: for ``tv_weights`` without a working torchvision.
            RuntimeError: when the published checkpoint cannot be fetched (names the URL).
        """
        if dir_prefix is not None and tv_weights is not None:
            raise ValueError(
                f"{self.label}: torchvision weights ({tv_weights!r}) are cached where torchvision decides; "
                f"download_path={dir_prefix!r} cannot apply to them. Fix: drop download_path."
            )
        if tv_weights is not None:
            self._load_torchvision(tv_weights)
        else:
            self._load_published(dir_prefix)

    def _load_published(self, dir_prefix: str | None) -> None:
        url = self._url()
        weight = self.convnet.conv1.weight
        try:
            checkpoint = torch.hub.load_state_dict_from_url(
                url, model_dir=dir_prefix, map_location=weight.device, progress=True
            )
        except OSError as err:  # URLError, HTTPError, timeouts and unreadable caches are all OSErrors
            where = dir_prefix or f"{torch.hub.get_dir()}/checkpoints"
            raise RuntimeError(
                _DOWNLOAD_FAILED.format(label=self.label, model=self.model_name, url=url, error=err, where=where)
            ) from err
        prefix = "module.convnet."
        entries = checkpoint.get(self.checkpoint_root, {}) if isinstance(checkpoint, dict) else {}
        state = {k[len(prefix) :]: v for k, v in entries.items() if k.startswith(prefix)}
        if not state:
            raise RuntimeError(
                f"{self.label}: the checkpoint from {url} holds no '{self.checkpoint_root}' entry with "
                f"'{prefix}*' weights. Fix: delete the cached file (a partial or different download) and retry."
            )
        self.convnet.load_state_dict(state)

    def _load_torchvision(self, tv_weights: Any) -> None:
        models = _import_torchvision_models(self.label, tv_weights)
        enum_name = f"ResNet{self.model_name.removeprefix('resnet')}_Weights"
        enum = getattr(models, enum_name)
        if isinstance(tv_weights, str):
            if tv_weights not in enum.__members__:
                raise ValueError(
                    f"{self.label}: download={tv_weights!r} is not a torchvision {enum_name} member; "
                    f"expected one of {list(enum.__members__)}."
                )
            tv_weights = enum[tv_weights]
        state = tv_weights.get_state_dict(progress=True)
        # the ImageNet classifier is not part of the encoder: the head stays as built
        head = self.convnet.fc.state_dict()
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        state.update({f"fc.{k}": v for k, v in head.items()})
        self.convnet.load_state_dict(state)


class _PretrainedEncoder(Compose):
    """The pipeline a pretrained encoder builds; subclasses set ``label``, ``prefix`` and ``net_class``."""

    label: ClassVar[str] = ""
    #: the default output entry is ``f"{prefix}_vec"``
    prefix: ClassVar[str] = ""
    net_class: ClassVar[type[_EncoderNet]] = _EncoderNet

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
        keys = _key_list(in_keys) if in_keys is not None else ["pixels"]
        if not keys:
            raise ValueError(f"{self.label}: in_keys is empty. Fix: name the pixel entries, e.g. ['pixels'].")
        outs = _key_list(out_keys) if out_keys is not None else []
        if not outs:
            outs = [f"{self.prefix}_vec"] if stack_images else [f"{self.prefix}_vec_{i}" for i in range(len(keys))]
        elif stack_images and len(outs) != 1:
            raise ValueError(
                f"{self.label}: stack_images=True writes one embedding, so out_keys must hold one key; got "
                f"out_keys={outs}. Fix: pass one out_key, or stack_images=False for one embedding per in_key."
            )
        elif not stack_images and len(outs) != len(keys):
            raise ValueError(
                f"{self.label}: stack_images=False writes one embedding per in_key, so out_keys must hold "
                f"{len(keys)} keys; got out_keys={outs} for in_keys={keys}."
            )
        copies = _key_list(tensor_pixels_keys) if tensor_pixels_keys else []
        if copies and len(copies) != len(keys):
            raise ValueError(
                f"{self.label}: tensor_pixels_keys names where each in_key's raw frames are kept, so it must "
                f"hold {len(keys)} keys; got {copies} for in_keys={keys}."
            )
        if model_name not in self.net_class.models:
            raise ValueError(
                f"{self.label}: model_name {model_name!r} is not supported; expected one of "
                f"{sorted(self.net_class.models)}."
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{self.label}: size must be a positive int (the side of the square image), got {size!r}.")

        transforms: list[Transform] = [
            CatTensors(in_keys=[key], out_key=copy, del_keys=False) for key, copy in zip(keys, copies)
        ]
        transforms.append(ToTensorImage(in_keys=keys))
        transforms.append(
            ObservationNorm(
                loc=torch.tensor(_IMAGENET_MEAN).view(3, 1, 1),
                scale=torch.tensor(_IMAGENET_STD).view(3, 1, 1),
                in_keys=keys,
                standard_normal=True,
            )
        )
        transforms.append(_ResizeLikeTorchvision(size, size, in_keys=keys))
        if stack_images and len(keys) > 1:
            transforms += [
                UnsqueezeTransform(-4, in_keys=keys, out_keys=keys),
                CatTensors(keys, outs[0], dim=-4),
                self.net_class(outs, outs, model_name, del_keys=False, requires_grad=requires_grad),
                FlattenObservation(-2, -1, in_keys=outs),
            ]
        else:
            transforms.append(self.net_class(keys, outs, model_name, del_keys=True, requires_grad=requires_grad))
        super().__init__(*transforms)
        for transform in transforms:
            transform.eval()  # TorchRL's Compose puts what it is given in eval mode; .train() undoes it
        self.in_keys, self.out_keys = keys, outs
        self.model_name = model_name
        self.size = size
        self.stack_images = stack_images
        self.download = download
        self.download_path = download_path
        self.tensor_pixels_keys = copies or None
        self.requires_grad = requires_grad
        self._device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        if download is True:
            self.network.load_weights(dir_prefix=download_path)
        elif download:
            self.network.load_weights(dir_prefix=download_path, tv_weights=download)

    @property
    def network(self) -> _EncoderNet:
        """The network step of the pipeline (holds ``convnet``)."""
        return next(t for t in self.transforms if isinstance(t, _EncoderNet))

    @property
    def device(self) -> torch.device | None:
        """The device given to the last ``.to(device)`` (None before any)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype given to the last ``.to(dtype)`` (None before any)."""
        return self._dtype

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """``nn.Module.to``, remembering the device and dtype (``transform.device``, ``transform.dtype``)."""
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, torch.dtype):
                self._dtype = arg
            elif isinstance(arg, (str, int, torch.device)) and not isinstance(arg, bool):
                self._device = torch.device(arg)
        out = super().to(*args, **kwargs)
        self._notify_spec_change()  # the embedding's dtype is the network's
        return out


def _key_list(keys: NestedKey | Sequence[NestedKey]) -> list:
    if isinstance(keys, (str, tuple)):
        return [keys]
    return list(keys)
