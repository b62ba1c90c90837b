"""ScaleMapLearner (MiDaS-small refiner on EfficientNet-Lite3): layout, numerics, output rule."""

import json

import numpy as np
import pytest
import torch

from support.golden_fill import GOLDEN_PATH, MANIFEST_PATH, filled_state_dict, rel_err
from hybriddepth_ros.core.models.efficientnet_lite import (
    EfficientNetLiteEncoder,
    SamePadConv2d,
    round_channels,
)
from hybriddepth_ros.core.models.scale_map_learner import ScaleMapLearner

PREFIX = "model.ScaleMapLearner."
needs_shared = pytest.mark.skipif(
    not (GOLDEN_PATH.exists() and MANIFEST_PATH.exists()), reason="../shared/reference absent"
)


def test_lite3_channel_rounding():
    # Lite3 widths: 16,24,40,80,112,192,320 x1.2 rounded to multiples of 8.
    assert [round_channels(c, 1.2) for c in (16, 24, 40, 80, 112, 192, 320)] == [24, 32, 48, 96, 136, 232, 384]


def test_encoder_levels_have_strides_4_8_16_32():
    encoder = EfficientNetLiteEncoder().eval()
    with torch.no_grad():
        levels = encoder(torch.rand(1, 3, 96, 128))
    assert [tuple(t.shape[1:]) for t in levels] == [(32, 24, 32), (48, 12, 16), (136, 6, 8), (384, 3, 4)]


def test_same_padding_is_tensorflow_style():
    # TF 'SAME' with stride 2 and an even size pads 0 before and 1 after.
    conv = SamePadConv2d(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(torch.ones(1, 1, 4, 4))
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


def test_output_is_global_depth_times_relu_one_plus_head_and_floored():
    model = ScaleMapLearner().eval()
    with torch.no_grad():
        model.scratch.output_conv.output_conv[-1].weight.zero_()
        model.scratch.output_conv.output_conv[-1].bias.fill_(0.5)
        global_depth = torch.full((1, 1, 64, 64), 2.0)
        global_depth[..., :8, :] = 0.001
        out = model(torch.rand(1, 3, 64, 64), global_depth)
    assert torch.allclose(out[..., 8:, :], torch.full_like(out[..., 8:, :], 3.0))
    assert torch.allclose(out[..., :8, :], torch.full_like(out[..., :8, :], 0.02))


def test_any_size_is_padded_and_cropped_back():
    model = ScaleMapLearner().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 50, 70), torch.ones(1, 1, 50, 70))
    assert out.shape == (1, 1, 50, 70) and torch.all(torch.isfinite(out))


@needs_shared
def test_state_dict_matches_manifest():
    manifest = json.loads(MANIFEST_PATH.read_text())
    expected = {k[len(PREFIX):]: v for k, v in manifest.items() if k.startswith(PREFIX)}
    actual = {k: list(v.shape) for k, v in ScaleMapLearner().state_dict().items()}
    assert actual == expected


@needs_shared
def test_golden_metric_depth():
    golden = np.load(GOLDEN_PATH)
    model = ScaleMapLearner()
    model.load_state_dict(filled_state_dict(model, PREFIX), strict=True)
    model.eval()
    global_depth = torch.from_numpy(golden["global_depth"])
    scale_map = torch.from_numpy(golden["dff_depth"]) / global_depth
    scale_map = torch.where(torch.isfinite(scale_map), scale_map, torch.ones_like(scale_map))
    x = torch.cat([global_depth, scale_map, torch.from_numpy(golden["dff_std"])], dim=1)
    with torch.no_grad():
        metric = model(x, global_depth)
    assert rel_err(metric.numpy(), golden["metric_depth"]) <= 1e-4
