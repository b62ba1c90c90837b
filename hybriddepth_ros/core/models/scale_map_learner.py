"""The scale-map refiner of HybridDepth: a MiDaS-small style network that corrects
the globally aligned depth per pixel.

Input is three channels [global_depth, scale_map, dff_std]; the network predicts
a per-pixel multiplicative correction ``relu(1 + o)`` of the globally aligned
depth. Layout (and state_dict key names) follow the reference's
``MidasNet_small_videpth`` with an EfficientNet-Lite3 encoder, ``features=64``
and expanding decoder widths (64, 128, 256, 512).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet_lite import EfficientNetLiteEncoder

SIZE_MULTIPLE_PX = 32


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convs with bias, no normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip feature, refines, upsamples x2 (bilinear, align_corners) and projects 1x1."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.out_conv = nn.Conv2d(channels, out_channels, 1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(self, path: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        path = F.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class OutputHead(nn.Module):
    """3x3 conv -> x2 bilinear upsample -> 3x3 conv -> ReLU -> 1x1 conv to one channel (no final activation)."""

    def __init__(self, features: int):
        super().__init__()
        self.output_conv = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_conv(x)


class ScaleMapLearner(nn.Module):
    """Per-pixel scale refinement: forward(x (B,C,H,W), global_depth (B,1,H,W)) -> metric depth (B,1,H,W).

    The encoder works on multiples of 32 px; other sizes are edge-padded at the
    bottom and right and the output cropped back.
    `min_pred_m` is the floor the reference applies to its output; `max_pred_m`
    is kept for fidelity with the reference configuration, which sets but never
    applies it.
    """

    def __init__(
        self, in_channels: int = 3, features: int = 64, min_pred_m: float = 0.02, max_pred_m: float = 0.28
    ):
        super().__init__()
        self.min_pred_m = min_pred_m
        self.max_pred_m = max_pred_m
        self.first = nn.Sequential(
            nn.Conv2d(in_channels, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True)
        )
        self.pretrained = EfficientNetLiteEncoder()
        widths = (features, features * 2, features * 4, features * 8)
        self.scratch = nn.Module()
        for level, (in_ch, width) in enumerate(zip(self.pretrained.feature_channels, widths), start=1):
            setattr(self.scratch, f"layer{level}_rn", nn.Conv2d(in_ch, width, 3, padding=1, bias=False))
        self.scratch.refinenet4 = FeatureFusionBlock(widths[3], widths[3] // 2)
        self.scratch.refinenet3 = FeatureFusionBlock(widths[2], widths[2] // 2)
        self.scratch.refinenet2 = FeatureFusionBlock(widths[1], widths[1] // 2)
        self.scratch.refinenet1 = FeatureFusionBlock(widths[0], widths[0])
        self.scratch.output_conv = OutputHead(features)

    def predict_scales(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel multiplicative correction relu(1 + o), (B,1,H,W)."""
        levels = self.pretrained(self.first(x))
        s = self.scratch
        level1, level2, level3, level4 = (
            s.layer1_rn(levels[0]),
            s.layer2_rn(levels[1]),
            s.layer3_rn(levels[2]),
            s.layer4_rn(levels[3]),
        )
        path = s.refinenet4(level4)
        path = s.refinenet3(path, level3)
        path = s.refinenet2(path, level2)
        path = s.refinenet1(path, level1)
        return F.relu(1.0 + s.output_conv(path))

    def forward(self, x: torch.Tensor, global_depth: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_bottom, pad_right = -height % SIZE_MULTIPLE_PX, -width % SIZE_MULTIPLE_PX
        if pad_bottom or pad_right:
            x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
        scales = self.predict_scales(x)[..., :height, :width]
        return (global_depth * scales).clamp_min(self.min_pred_m)
