"""EfficientNet-Lite feature encoder, written out by hand (no timm / geffnet dependency).

The scale-map refiner of HybridDepth uses the TensorFlow-ported EfficientNet-Lite3
as its encoder, cut into four levels (strides 4, 8, 16, 32) the way MiDaS-small
cuts it. Module names follow that layout so official checkpoints load strictly:
``layer1 = [conv_stem, bn1, act1, stage0, stage1]``, ``layer2 = [stage2]``,
``layer3 = [stage3, stage4]``, ``layer4 = [stage5, stage6]``.

Architecture facts of the Lite family (EfficientNet with the squeeze-excite
blocks removed, ReLU6 everywhere, stem and head not scaled):

    stage  block              repeats  kernel  stride  expansion  channels
    0      depthwise-separable   1       3       1        1         16
    1      inverted residual     2       3       2        6         24
    2      inverted residual     2       5       2        6         40
    3      inverted residual     3       3       2        6         80
    4      inverted residual     3       5       1        6        112
    5      inverted residual     4       5       2        6        192
    6      inverted residual     1       3       1        6        320

Lite3 multiplies channels by 1.2 (rounded to multiples of 8) and repeats by 1.4
(rounded up, first and last stage fixed). The TF port pads like TensorFlow
'SAME' (asymmetric for stride 2) and uses BatchNorm eps 1e-3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TF_BATCHNORM_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """One stage of the Lite architecture before width/depth scaling."""

    inverted_residual: bool
    repeats: int
    kernel_size: int
    stride: int
    expansion: int
    channels: int


LITE_STAGES = (
    StageSpec(False, 1, 3, 1, 1, 16),
    StageSpec(True, 2, 3, 2, 6, 24),
    StageSpec(True, 2, 5, 2, 6, 40),
    StageSpec(True, 3, 3, 2, 6, 80),
    StageSpec(True, 3, 5, 1, 6, 112),
    StageSpec(True, 4, 5, 2, 6, 192),
    StageSpec(True, 1, 3, 1, 6, 320),
)
LITE_STEM_CHANNELS = 32


def round_channels(channels: float, multiplier: float, divisor: int = 8) -> int:
    """Scale a channel count and round to a multiple of `divisor`, never losing more than 10 %."""
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def scale_repeats(repeats: int, multiplier: float) -> int:
    """Depth scaling rounds the number of blocks up."""
    return int(math.ceil(repeats * multiplier))


class SamePadConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow 'SAME': output = ceil(input / stride), extra pixel at the end.

    Only strided convolutions need it; with stride 1 'SAME' equals symmetric k//2 padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
        ):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def make_conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1, tf_same: bool = True) -> nn.Conv2d:
    """Bias-free conv with 'SAME' (TF port) or symmetric k//2 padding."""
    if tf_same and stride > 1:
        return SamePadConv2d(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=False)
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False)


class DepthwiseSeparableBlock(nn.Module):
    """Depthwise conv -> BN -> ReLU6 -> pointwise conv -> BN (no activation), residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, bn_eps: float, tf_same: bool):
        super().__init__()
        self.conv_dw = make_conv(in_ch, in_ch, kernel_size, stride, groups=in_ch, tf_same=tf_same)
        self.bn1 = nn.BatchNorm2d(in_ch, eps=bn_eps)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_pw = make_conv(in_ch, out_ch, 1, tf_same=tf_same)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.has_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(x)))))
        return out + x if self.has_residual else out


class InvertedResidualBlock(nn.Module):
    """Expand (1x1) -> depthwise kxk -> project (1x1, linear), residual when shapes allow."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int, bn_eps: float, tf_same: bool
    ):
        super().__init__()
        mid_ch = in_ch * expansion
        self.conv_pw = make_conv(in_ch, mid_ch, 1, tf_same=tf_same)
        self.bn1 = nn.BatchNorm2d(mid_ch, eps=bn_eps)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_dw = make_conv(mid_ch, mid_ch, kernel_size, stride, groups=mid_ch, tf_same=tf_same)
        self.bn2 = nn.BatchNorm2d(mid_ch, eps=bn_eps)
        self.act2 = nn.ReLU6(inplace=True)
        self.conv_pwl = make_conv(mid_ch, out_ch, 1, tf_same=tf_same)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.has_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_residual else out


def build_lite_stages(
    in_ch: int, channel_multiplier: float, depth_multiplier: float, bn_eps: float, tf_same: bool
) -> tuple[list[nn.Sequential], list[int]]:
    """The seven scaled stages and their output channel counts."""
    stages, channels = [], []
    last = len(LITE_STAGES) - 1
    for index, spec in enumerate(LITE_STAGES):
        out_ch = round_channels(spec.channels, channel_multiplier)
        repeats = spec.repeats if index in (0, last) else scale_repeats(spec.repeats, depth_multiplier)
        blocks = []
        for repeat in range(repeats):
            stride = spec.stride if repeat == 0 else 1
            if spec.inverted_residual:
                blocks.append(
                    InvertedResidualBlock(in_ch, out_ch, spec.kernel_size, stride, spec.expansion, bn_eps, tf_same)
                )
            else:
                blocks.append(DepthwiseSeparableBlock(in_ch, out_ch, spec.kernel_size, stride, bn_eps, tf_same))
            in_ch = out_ch
        stages.append(nn.Sequential(*blocks))
        channels.append(out_ch)
    return stages, channels


class EfficientNetLiteEncoder(nn.Module):
    """Four-level EfficientNet-Lite encoder: (B,3,H,W) -> features at strides 4, 8, 16, 32.

    Defaults are Lite3 as the TF port builds it (channel x1.2, depth x1.4,
    'SAME' padding, BN eps 1e-3); level channels are then (32, 48, 136, 384).
    """

    def __init__(
        self,
        channel_multiplier: float = 1.2,
        depth_multiplier: float = 1.4,
        bn_eps: float = TF_BATCHNORM_EPS,
        tf_same_padding: bool = True,
    ):
        super().__init__()
        stem = make_conv(3, LITE_STEM_CHANNELS, 3, stride=2, tf_same=tf_same_padding)
        stages, channels = build_lite_stages(
            LITE_STEM_CHANNELS, channel_multiplier, depth_multiplier, bn_eps, tf_same_padding
        )
        self.layer1 = nn.Sequential(
            stem, nn.BatchNorm2d(LITE_STEM_CHANNELS, eps=bn_eps), nn.ReLU6(inplace=True), stages[0], stages[1]
        )
        self.layer2 = nn.Sequential(stages[2])
        self.layer3 = nn.Sequential(stages[3], stages[4])
        self.layer4 = nn.Sequential(stages[5], stages[6])
        self.feature_channels = (channels[1], channels[2], channels[4], channels[6])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        level1 = self.layer1(x)
        level2 = self.layer2(level1)
        level3 = self.layer3(level2)
        level4 = self.layer4(level3)
        return level1, level2, level3, level4
