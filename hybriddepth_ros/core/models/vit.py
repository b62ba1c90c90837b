"""DINOv2 vision transformer (patch 14), the encoder of Depth Anything, in plain torch.

Attribute names follow the published DINOv2 / Depth Anything checkpoints so their
state_dicts load strictly (`cls_token`, `pos_embed`, `blocks.N.attn.qkv`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE_PX = 14
# The released DINOv2 models are trained at 518 px: a 37x37 patch grid plus the class token.
PRETRAIN_SIZE_PX = 518
# DINOv2 adds this to the target grid size before deriving the bicubic scale factor, so that
# floor(scale * N) lands on the wanted grid size despite floating-point error.
POS_EMBED_INTERPOLATE_OFFSET = 0.1
LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class ViTSize:
    embed_dim: int
    depth: int
    num_heads: int


VIT_SIZES = {
    "vits": ViTSize(embed_dim=384, depth=12, num_heads=6),
    "vitb": ViTSize(embed_dim=768, depth=12, num_heads=12),
    "vitl": ViTSize(embed_dim=1024, depth=24, num_heads=16),
}


class PatchEmbed(nn.Module):
    """Non-overlapping 14x14 patches -> tokens (B, N, D) by one strided convolution."""

    def __init__(self, embed_dim: int, in_channels: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=PATCH_SIZE_PX, stride=PATCH_SIZE_PX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Learned per-channel gain on a residual branch (DINOv2 trains with it, init 1.0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoViT(nn.Module):
    """DINOv2 ViT-S/B/L with patch 14; returns normalised tokens of chosen blocks for DPT."""

    def __init__(self, encoder: str = "vits"):
        super().__init__()
        if encoder not in VIT_SIZES:
            raise ValueError(f"encoder must be one of {sorted(VIT_SIZES)}, got '{encoder}'")
        size = VIT_SIZES[encoder]
        self.embed_dim = size.embed_dim
        self.depth = size.depth
        grid = PRETRAIN_SIZE_PX // PATCH_SIZE_PX
        self.patch_embed = PatchEmbed(size.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, size.embed_dim))
        # Unused at inference (masked-image pre-training only) but part of every released checkpoint.
        self.mask_token = nn.Parameter(torch.zeros(1, size.embed_dim))
        self.blocks = nn.ModuleList(Block(size.embed_dim, size.num_heads) for _ in range(size.depth))
        self.norm = nn.LayerNorm(size.embed_dim, eps=LAYER_NORM_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def positional_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """pos_embed for a grid_h x grid_w patch grid: bicubic resampling of the 37x37 table as DINOv2 does."""
        stored_grid = int(math.sqrt(self.pos_embed.shape[1] - 1))
        if grid_h == stored_grid and grid_w == stored_grid:
            return self.pos_embed
        table = self.pos_embed.float()
        cls_pos, patch_pos = table[:, :1], table[:, 1:]
        patch_pos = patch_pos.reshape(1, stored_grid, stored_grid, -1).permute(0, 3, 1, 2)
        # A scale factor (not a target size) is what the released models use; it changes the
        # sampling positions slightly, so the offset form is kept for numerical equivalence.
        scale = (
            (grid_h + POS_EMBED_INTERPOLATE_OFFSET) / stored_grid,
            (grid_w + POS_EMBED_INTERPOLATE_OFFSET) / stored_grid,
        )
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        if patch_pos.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(f"positional embedding resampled to {tuple(patch_pos.shape[-2:])}, wanted {(grid_h, grid_w)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B, 1 + H/14 * W/14, D): class token first, positions added."""
        height_px, width_px = x.shape[-2:]
        if height_px % PATCH_SIZE_PX or width_px % PATCH_SIZE_PX:
            raise ValueError(f"input {height_px}x{width_px} px is not a multiple of the {PATCH_SIZE_PX} px patch")
        patches = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1), patches), dim=1)
        return tokens + self.positional_embedding(height_px // PATCH_SIZE_PX, width_px // PATCH_SIZE_PX)

    def intermediate_layers(
        self, x: torch.Tensor, block_indices: Sequence[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each block index (ascending): (patch tokens (B,N,D), class token (B,D)), both after the final norm."""
        wanted = set(block_indices)
        if not wanted <= set(range(self.depth)):
            raise ValueError(f"block indices {sorted(wanted)} outside 0..{self.depth - 1}")
        outputs = []
        x = self.tokens(x)
        for index, block in enumerate(self.blocks[: max(wanted) + 1]):
            x = block(x)
            if index in wanted:
                normed = self.norm(x)
                outputs.append((normed[:, 1:], normed[:, 0]))
        return outputs
