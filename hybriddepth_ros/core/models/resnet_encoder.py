"""ResNet-18 feature encoder, written without torchvision.

Attribute names follow the classic ResNet layout (conv1, bn1, layer1..layer4,
fc, blocks with conv1/bn1/conv2/bn2/downsample) because the DFV checkpoints
were trained on that layout and their state_dict keys must load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

RESNET18_STAGE_CHANNELS = (64, 128, 256, 512)
IMAGENET_CLASSES = 1000


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1-projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet18Encoder(nn.Module):
    """ResNet-18 trunk returning its four stage outputs (strides 4, 8, 16, 32).

    `fc` is the ImageNet classification head. The features never use it; it is
    kept only because the checkpoints contain it and loading is strict.
    """

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        stage_in = 64
        for index, stage_out in enumerate(RESNET18_STAGE_CHANNELS):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(stage_in, stage_out, stride), BasicBlock(stage_out, stage_out)))
            stage_in = stage_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(RESNET18_STAGE_CHANNELS[-1], IMAGENET_CLASSES)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,3,H,W) -> features at H/4 (64 ch), H/8 (128), H/16 (256), H/32 (512)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        stride4 = self.layer1(x)
        stride8 = self.layer2(stride4)
        stride16 = self.layer3(stride8)
        stride32 = self.layer4(stride16)
        return stride4, stride8, stride16, stride32
