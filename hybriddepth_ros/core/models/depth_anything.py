"""Depth Anything (V1 and V2): a DINOv2 encoder and a DPT head giving relative inverse depth.

HybridDepth uses it as its relative-depth branch. Attribute names reproduce the
released checkpoints' keys (`pretrained.*`, `depth_head.*`), so stand-alone
Depth Anything files and the HybridDepth checkpoint both load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit import PATCH_SIZE_PX, DinoViT

# Square side the network is run at by HybridDepth (the DINOv2 pre-training size).
INPUT_SIZE_PX = 518
HEAD_HIDDEN_CHANNELS = 32


@dataclass(frozen=True)
class DPTSize:
    features: int
    out_channels: tuple[int, int, int, int]


DPT_SIZES = {
    "vits": DPTSize(features=64, out_channels=(48, 96, 192, 384)),
    "vitb": DPTSize(features=128, out_channels=(96, 192, 384, 768)),
    "vitl": DPTSize(features=256, out_channels=(256, 512, 1024, 1024)),
}

ENCODERS = tuple(DPT_SIZES)
VERSIONS = (1, 2)

# V1 feeds the head the last four blocks; V2 spreads the taps over the depth of the encoder.
V2_BLOCK_INDICES = {"vits": (2, 5, 8, 11), "vitb": (2, 5, 8, 11), "vitl": (4, 11, 17, 23)}


def block_indices(encoder: str, version: int, depth: int) -> tuple[int, ...]:
    """Encoder blocks whose tokens the DPT head reads, per Depth Anything version."""
    if version == 1:
        return tuple(range(depth - 4, depth))
    if version == 2:
        return V2_BLOCK_INDICES[encoder]
    raise ValueError(f"Depth Anything version must be one of {VERSIONS}, got {version}")


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = conv3x3(features, features)
        self.conv2 = conv3x3(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet-style fusion: add the refined skip, refine, upsample (bilinear, corners aligned), 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: torch.Size | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTScratch(nn.Module):
    """The head's shared-width part: per-level 3x3 convs to `features`, fusion blocks, output convs."""

    def __init__(self, size: DPTSize):
        super().__init__()
        features = size.features
        self.layer1_rn = conv3x3(size.out_channels[0], features, bias=False)
        self.layer2_rn = conv3x3(size.out_channels[1], features, bias=False)
        self.layer3_rn = conv3x3(size.out_channels[2], features, bias=False)
        self.layer4_rn = conv3x3(size.out_channels[3], features, bias=False)
        self.refinenet1 = FusionBlock(features)
        self.refinenet2 = FusionBlock(features)
        self.refinenet3 = FusionBlock(features)
        self.refinenet4 = FusionBlock(features)
        self.output_conv1 = conv3x3(features, features // 2)
        # Indices 0 and 2 carry weights, as in the checkpoints; the closing ReLU keeps depth >= 0.
        self.output_conv2 = nn.Sequential(
            conv3x3(features // 2, HEAD_HIDDEN_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN_CHANNELS, 1, kernel_size=1),
            nn.ReLU(),
        )


class DPTHead(nn.Module):
    """Dense prediction head: four token maps -> a 4-level pyramid (1/4 .. 1/32 of 14 px patches) -> one channel."""

    def __init__(self, embed_dim: int, size: DPTSize):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(embed_dim, channels, kernel_size=1) for channels in size.out_channels)
        c0, c1, _, c3 = size.out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = DPTScratch(size)

    def forward(self, token_maps: list[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """token_maps: four (B, D, grid_h, grid_w) maps, shallow to deep; returns (B, 1, *output_size)."""
        s = self.scratch
        levels = [resize(project(t)) for t, project, resize in zip(token_maps, self.projects, self.resize_layers)]
        level1, level2, level3, level4 = (
            rn(level) for rn, level in zip((s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn), levels)
        )
        path = s.refinenet4(level4, size=level3.shape[2:])
        path = s.refinenet3(path, level3, size=level2.shape[2:])
        path = s.refinenet2(path, level2, size=level1.shape[2:])
        path = s.refinenet1(path, level1)
        out = F.interpolate(s.output_conv1(path), size=output_size, mode="bilinear", align_corners=True)
        return s.output_conv2(out)


class DepthAnything(nn.Module):
    """Relative (affine-invariant inverse) depth from RGB; `version` picks which encoder blocks feed the head."""

    def __init__(self, encoder: str = "vits", version: int = 1):
        super().__init__()
        if encoder not in DPT_SIZES:
            raise ValueError(f"encoder must be one of {sorted(DPT_SIZES)}, got '{encoder}'")
        self.pretrained = DinoViT(encoder)
        self.head_block_indices = block_indices(encoder, version, self.pretrained.depth)
        self.depth_head = DPTHead(self.pretrained.embed_dim, DPT_SIZES[encoder])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,3,H,W), H and W multiples of 14 -> (B,H,W) relative inverse depth, >= 0."""
        batch, _, height_px, width_px = x.shape
        grid_h, grid_w = height_px // PATCH_SIZE_PX, width_px // PATCH_SIZE_PX
        layers = self.pretrained.intermediate_layers(x, self.head_block_indices)
        token_maps = [patches.transpose(1, 2).reshape(batch, -1, grid_h, grid_w) for patches, _cls in layers]
        return self.depth_head(token_maps, (height_px, width_px)).squeeze(1)


def predict_relative_depth(model: DepthAnything, rgb: torch.Tensor) -> torch.Tensor:
    """rgb (B,3,H,W) in [0,1] -> (B,1,H,W) relative inverse depth, run at 518x518 as HybridDepth does.

    Both resizes are bicubic with aligned corners; inverting to depth is the caller's job.
    """
    height_px, width_px = rgb.shape[-2:]
    square = F.interpolate(rgb, size=(INPUT_SIZE_PX, INPUT_SIZE_PX), mode="bicubic", align_corners=True)
    relative = model(square).unsqueeze(1)
    return F.interpolate(relative, size=(height_px, width_px), mode="bicubic", align_corners=True)
