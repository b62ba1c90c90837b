"""The DFV network: metric depth from a focal stack by a differential focus volume.

This is the depth-from-focus branch of HybridDepth (the DFV model of Yang et
al. 2022, 4 decoder levels, differential volume). Every frame goes through a
ResNet-18 feature pyramid; differences between neighbouring frames' features
form a focus volume (channels x frames x rows x cols) at strides 32, 16, 8 and
4; a coarse-to-fine 3-D decoder turns it into one focus score per frame and
pixel; a softmax over the frames gives a probability of each focus distance,
whose expectation is the depth and whose standard deviation is the uncertainty.

Attribute names reproduce the published checkpoints' state_dict keys, so they
load strictly (HybridDepth's under the prefix `model.DFF_model.`).

Size rules of the network itself: height and width divisible by 32, both at
least 64 (the stride-32 map needs at least 2x2 cells for its pyramid pooling),
and at least 2 frames. `DFVNet.forward` pads other sizes (edge replication,
bottom and right) and crops the outputs back, so any H, W >= 1 is accepted.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .resnet_encoder import ResNet18Encoder

SIZE_MULTIPLE_PX = 32
MIN_SIZE_PX = 64
MIN_FRAMES = 2
LEAKY_SLOPE = 0.1
POOL_LEVELS = 4


def pool_grid_counts(sizes: tuple[int, ...]) -> list[int]:
    """Cells per axis of the four pooling grids: 1 up to half the smallest size, evenly spaced.

    The spacing is numpy's integer linspace (floor), as the trained network used.
    """
    largest = min(sizes) // 2
    if largest < 1:
        raise ValueError(f"pyramid pooling needs every pooled dimension >= 2, got {tuple(sizes)}")
    return [int(count) for count in np.linspace(1, largest, POOL_LEVELS, dtype=int)]


class ConvBnLeakyReLU(nn.Module):
    """2-D convolution (no bias), batch norm, leaky ReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.cbr_unit = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr_unit(x)


def _upsample2x_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest-neighbour 2x upsampling then a 3x3 ConvBnLeakyReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2), ConvBnLeakyReLU(in_channels, out_channels))


class PyramidPoolingSum(nn.Module):
    """Adds context from 4 average-pooling grids to a feature map (sum fusion, then ReLU of half)."""

    def __init__(self, channels: int):
        super().__init__()
        self.path_module_list = nn.ModuleList(
            ConvBnLeakyReLU(channels, channels, kernel_size=1) for _ in range(POOL_LEVELS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        # The finest grid feeds the first path.
        counts = reversed(pool_grid_counts((height, width)))
        fused = x
        for path, count in zip(self.path_module_list, counts):
            kernel = (height // count, width // count)
            pooled = path(F.avg_pool2d(x, kernel, stride=kernel))
            fused = fused + 0.25 * F.interpolate(pooled, size=(height, width), mode="bilinear", align_corners=False)
        return F.relu(fused / 2.0)


class FocusFeatureExtractor(nn.Module):
    """Per-frame feature pyramid: ResNet-18, pyramid pooling, U-Net style fusion, 1x1 projections.

    Returns features at strides 32, 16, 8, 4 with 128, 64, 32, 16 channels.
    """

    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Encoder()
        self.pyramid_pooling = PyramidPoolingSum(512)
        self.upconv6 = _upsample2x_conv(512, 256)
        self.iconv5 = ConvBnLeakyReLU(512, 256)
        self.upconv5 = _upsample2x_conv(256, 128)
        self.iconv4 = ConvBnLeakyReLU(256, 128)
        self.upconv4 = _upsample2x_conv(128, 64)
        self.iconv3 = ConvBnLeakyReLU(128, 64)
        self.proj6 = ConvBnLeakyReLU(512, 128, kernel_size=1)
        self.proj5 = ConvBnLeakyReLU(256, 64, kernel_size=1)
        self.proj4 = ConvBnLeakyReLU(128, 32, kernel_size=1)
        self.proj3 = ConvBnLeakyReLU(64, 16, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        stride4, stride8, stride16, stride32 = self.encoder(images)
        stride32 = self.pyramid_pooling(stride32)
        stride16 = self.iconv5(torch.cat((stride16, self.upconv6(stride32)), dim=1))
        stride8 = self.iconv4(torch.cat((stride8, self.upconv5(stride16)), dim=1))
        stride4 = self.iconv3(torch.cat((stride4, self.upconv4(stride8)), dim=1))
        return self.proj6(stride32), self.proj5(stride16), self.proj4(stride8), self.proj3(stride4)


class Conv3d(nn.Conv3d):
    """nn.Conv3d that runs on oneDNN for CPU float32 inference.

    PyTorch's CPU backend choice (a heuristic written for 2-D) sends batch-1
    volumes with channels*frames*rows <= 20480, which is every volume of this
    decoder at 480x640, to the unvectorised `slow_conv3d`: 200 ms instead of
    23 ms for a 32-channel 5x120x160 volume on a 2-core EPYC, 2.8 s instead of
    1.4 s for the whole DFV. Same parameters, same state_dict keys, same result.
    """

    def _conv_forward(self, volume: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            volume.device.type == "cpu"
            and volume.dtype == weight.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")  # autocast picks its own (bf16) kernel
            and not torch.compiler.is_compiling()  # the op has no meta kernel; the compiler picks its own
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and torch.backends.mkldnn.is_available()
        ):
            return torch.mkldnn_convolution(
                volume.contiguous(), weight, bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super()._conv_forward(volume, weight, bias)


def _conv3d_bn(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """3-D convolution (no bias, 'same' padding) followed by batch norm."""
    return nn.Sequential(
        Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm3d(out_channels),
    )


class ChannelProjection3d(nn.Module):
    """1x1x1 channel projection with batch norm, run as a 2-D conv over (frames, rows*cols)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = volume.shape
        projected = self.bn(self.conv1(volume.reshape(b, c, d, h * w)))
        return projected.reshape(b, -1, d, h, w)


class Residual3dBlock(nn.Module):
    """Two 3x3x3 conv+BN layers with a residual shortcut (projected when channels change)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.downsample = ChannelProjection3d(in_channels, out_channels) if in_channels != out_channels else None
        self.conv1 = _conv3d_bn(in_channels, out_channels, 3)
        self.conv2 = _conv3d_bn(out_channels, out_channels, 3)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(volume))
        shortcut = volume if self.downsample is None else self.downsample(volume)
        return F.relu(shortcut + self.conv2(out))


class FocusVolumeDecoder(nn.Module):
    """One decoder level over a (B, C, frames, rows, cols) focus volume.

    `forward` refines the volume (2 residual blocks, optional 3-D pyramid
    pooling). `up` (coarse levels) doubles rows and cols and halves the channels
    for the next finer level; `classify` scores each frame with one channel. At
    inference only the finest level's `classify` is used; the coarse levels'
    heads served as training-time supervision and stay for checkpoint loading.
    """

    def __init__(self, in_channels: int, channels: int, upsample: bool, pool: bool):
        super().__init__()
        self.convs = nn.Sequential(Residual3dBlock(in_channels, channels), Residual3dBlock(channels, channels))
        self.classify = nn.Sequential(
            _conv3d_bn(channels, channels, 3),
            nn.ReLU(inplace=True),
            nn.Sequential(Conv3d(channels, 1, 3, padding=1, bias=True)),
        )
        self.up = None
        if upsample:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear", align_corners=False),
                _conv3d_bn(channels, channels // 2, 3),
                nn.ReLU(inplace=True),
            )
        self.pool_convs = None
        if pool:
            self.pool_convs = nn.ModuleList(_conv3d_bn(channels, channels, 1) for _ in range(POOL_LEVELS))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        volume = self.convs(volume)
        if self.pool_convs is None:
            return volume
        size = volume.shape[2:]
        # The coarsest (global) grid feeds the first pooling conv.
        fused = volume
        for pool_conv, count in zip(self.pool_convs, pool_grid_counts(tuple(size))):
            kernel = tuple(extent // count for extent in size)
            pooled = pool_conv(F.avg_pool3d(volume, kernel, stride=kernel))
            fused = fused + 0.25 * F.interpolate(pooled, size=size, mode="trilinear", align_corners=False)
        return F.relu(fused / 2.0)


def differential_volume(volume: torch.Tensor) -> torch.Tensor:
    """Feature differences of consecutive frames along dim 2; the last frame keeps itself (minus zero)."""
    return torch.cat([volume[:, :, :-1] - volume[:, :, 1:], volume[:, :, -1:]], dim=2)


def expected_focus_distance(probabilities: torch.Tensor, focus_distances_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the focus distance under per-pixel frame probabilities.

    probabilities: (B, N, H, W) summing to 1 over N; focus_distances_m: (B, N).
    Returns depth_m and std_m, each (B, 1, H, W). The std is detached: it is a
    confidence signal for the next stage, not something to train through.
    """
    distances = focus_distances_m[:, :, None, None]
    depth_m = torch.sum(probabilities * distances, dim=1, keepdim=True)
    with torch.no_grad():
        std_m = torch.sqrt(torch.sum(probabilities * (depth_m - distances) ** 2, dim=1, keepdim=True))
    return depth_m, std_m.detach()


def padded_size(height_px: int, width_px: int) -> tuple[int, int]:
    """The smallest size >= (height, width) that the network accepts."""

    def fit(extent: int) -> int:
        return max(MIN_SIZE_PX, -(-extent // SIZE_MULTIPLE_PX) * SIZE_MULTIPLE_PX)

    return fit(height_px), fit(width_px)


class DFVNet(nn.Module):
    """DFV depth-from-focus network (4 levels, differential focus volume).

    forward(focal_stack (B,N,3,H,W), focus_distances_m (B,N)) -> (depth_m, std_m), each (B,1,H,W).
    The focal stack is used as given: normalisation (ImageNet mean/std for the
    published weights) is the caller's preprocessing. Depth is the
    softmax-weighted mean of the focus distances, so it lies within their range.
    """

    def __init__(self):
        super().__init__()
        self.feature_extraction = FocusFeatureExtractor()
        self.decoder3 = FocusVolumeDecoder(32, 32, upsample=False, pool=False)
        self.decoder4 = FocusVolumeDecoder(64, 32, upsample=True, pool=False)
        self.decoder5 = FocusVolumeDecoder(128, 64, upsample=True, pool=True)
        self.decoder6 = FocusVolumeDecoder(128, 128, upsample=True, pool=True)

    def forward(self, focal_stack: torch.Tensor, focus_distances_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if focal_stack.dim() != 5 or focal_stack.shape[2] != 3:
            raise ValueError(f"focal_stack must be (B, N, 3, H, W), got {tuple(focal_stack.shape)}")
        batch, frames, channels, height, width = focal_stack.shape
        if tuple(focus_distances_m.shape) != (batch, frames):
            raise ValueError(
                f"focus_distances_m must be ({batch}, {frames}) to match the stack, got {tuple(focus_distances_m.shape)}"
            )
        if frames < MIN_FRAMES:
            raise ValueError(f"the DFV network needs at least {MIN_FRAMES} frames, got {frames}")

        images = focal_stack.reshape(batch * frames, channels, height, width)
        padded_height, padded_width = padded_size(height, width)
        if (padded_height, padded_width) != (height, width):
            images = F.pad(images, (0, padded_width - width, 0, padded_height - height), mode="replicate")

        volumes = [
            differential_volume(features.reshape(batch, frames, *features.shape[1:]).transpose(1, 2))
            for features in self.feature_extraction(images)
        ]
        volume32, volume16, volume8, volume4 = volumes

        finer = self.decoder6.up(self.decoder6(volume32))
        finer = self.decoder5.up(self.decoder5(torch.cat((finer, volume16), dim=1)))
        finer = self.decoder4.up(self.decoder4(torch.cat((finer, volume8), dim=1)))
        focus_scores = self.decoder3.classify(self.decoder3(torch.cat((finer, volume4), dim=1))).squeeze(1)

        # The expectation runs in float32 under autocast too: in bf16 the depth itself would be
        # quantised to 8 significant bits (1.6 cm steps at 3 m).
        focus_scores = F.interpolate(
            focus_scores.float(), size=(padded_height, padded_width), mode="bilinear", align_corners=False
        )
        depth_m, std_m = expected_focus_distance(F.softmax(focus_scores, dim=1), focus_distances_m.float())
        return depth_m[..., :height, :width], std_m[..., :height, :width]
