"""ResNet-18/34/50 backbones whose parameter names are torchvision's.

The pretrained encoders (:class:`~tdrl.envs.transforms.R3MTransform`,
:class:`~tdrl.envs.transforms.VIPTransform`) ship their weights as state dicts of
torchvision ResNets. Building the same layers here, under the same names, lets those
weights load without torchvision installed; torchvision is only needed for its own
ImageNet weights.

The architecture is the one of He et al. (2016) in its "v1.5" form: in a bottleneck
block the stride sits on the 3x3 convolution.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RESNET_LAYOUTS", "ResNet", "resnet"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions and a skip connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + skip)


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, and a skip connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + skip)


#: name -> (block, blocks per stage)
RESNET_LAYOUTS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (_BasicBlock, (2, 2, 2, 2)),
    "resnet34": (_BasicBlock, (3, 4, 6, 3)),
    "resnet50": (_Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A ResNet on ``float [N, 3, H, W]`` images, returning ``[N, features]`` after ``fc``.

    Args:
        block: ``_BasicBlock`` or ``_Bottleneck``.
        layers: the number of blocks in each of the four stages.
        num_classes: the output size of ``fc`` (replace ``fc`` to change the head).
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int, int], num_classes: int = 1000) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, 64, layers[0], stride=1)
        self.layer2 = self._stage(block, 128, layers[1], stride=2)
        self.layer3 = self._stage(block, 256, layers[2], stride=2)
        self.layer4 = self._stage(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.features = 512 * block.expansion  # type: ignore[attr-defined]
        self.fc: nn.Module = nn.Linear(self.features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _stage(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        expansion = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if stride != 1 or self.in_planes != planes * expansion:
            downsample = nn.Sequential(
                _conv1x1(self.in_planes, planes * expansion, stride), nn.BatchNorm2d(planes * expansion)
            )
        stage = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * expansion
        stage += [block(self.in_planes, planes, 1, None) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(name: str) -> ResNet:
    """A randomly initialised ResNet by name (``"resnet18"``, ``"resnet34"`` or ``"resnet50"``).

    Raises:
        ValueError: for any other name.

    Examples:
        >>> import torch
        >>> net = resnet("resnet18")
        >>> net.fc = torch.nn.Identity()
        >>> net.eval()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """
    if name not in RESNET_LAYOUTS:
        raise ValueError(f"resnet: unknown model {name!r}; expected one of {sorted(RESNET_LAYOUTS)}.")
    block, layers = RESNET_LAYOUTS[name]
    return ResNet(block, layers)
