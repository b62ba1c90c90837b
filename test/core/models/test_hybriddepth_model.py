"""The full HybridDepth network: checkpoint-compatible keys, every golden intermediate, swappable branches."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from support.golden_fill import GOLDEN_PATH, MANIFEST_PATH, filled_state_dict, rel_err
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet

needs_shared = pytest.mark.skipif(
    not (GOLDEN_PATH.exists() and MANIFEST_PATH.exists()), reason="../shared/reference absent"
)


@pytest.fixture(scope="module")
def default_model():
    return HybridDepthNet()


@pytest.fixture(scope="module")
def golden_run(default_model):
    """One forward of the golden-filled model on the golden inputs (ViT-S at 518 px: a few seconds)."""
    golden = np.load(GOLDEN_PATH)
    model = default_model
    model.load_state_dict(filled_state_dict(model, "model."), strict=True)
    model.eval()
    with torch.inference_mode():
        out = model(
            torch.from_numpy(golden["aif"]),
            torch.from_numpy(golden["focal_stack"]),
            torch.from_numpy(golden["focus_distances"]),
        )
    return golden, out


@needs_shared
def test_state_dict_keys_and_shapes_equal_the_official_checkpoint(default_model):
    manifest = json.loads(MANIFEST_PATH.read_text())
    assert len(manifest) == 1140
    actual = {"model." + k: list(v.shape) for k, v in default_model.state_dict().items()}
    assert actual == manifest


@needs_shared
@pytest.mark.parametrize("name", ["relative_depth", "dff_depth", "dff_std", "global_depth", "metric_depth"])
def test_golden_intermediate(golden_run, name):
    golden, out = golden_run
    value = getattr(out, name)
    assert value.shape == golden[name].shape
    assert rel_err(value.numpy(), golden[name]) <= 1e-4


@needs_shared
def test_golden_scale_map_is_dff_over_global(golden_run):
    golden, out = golden_run
    expected = golden["dff_depth"] / golden["global_depth"]
    assert rel_err(out.scale_map.numpy(), expected) <= 1e-4


class ConstantInverseDepth(nn.Module):
    """Relative branch stand-in: inverse depth 1/(1 + row index), so relative depth = 1 + row."""

    def forward(self, rgb):
        rows = torch.arange(rgb.shape[-2], dtype=rgb.dtype)[:, None].expand(rgb.shape[-2:])
        return (1.0 / (1.0 + rows)).expand(rgb.shape[0], 1, *rgb.shape[-2:])


class PlaneDFF(nn.Module):
    """Metric branch stand-in with no weights: depth 0.5 + 0.01 * row, std 0.1 m."""

    def forward(self, focal_stack, focus_distances_m):
        b, _, _, h, w = focal_stack.shape
        rows = torch.arange(h, dtype=focal_stack.dtype)[:, None].expand(h, w)
        depth = (0.5 + 0.01 * rows).expand(b, 1, h, w)
        return depth, torch.full_like(depth, 0.1)


@pytest.mark.parametrize("alignment", ["least_squares", "confidence_weighted"])
def test_swapped_branches_flow_through_alignment_and_refiner(alignment):
    model = HybridDepthNet(ConstantInverseDepth(), PlaneDFF(), alignment=alignment).eval()
    assert not any(k.startswith(("depth_anything.", "DFF_model.")) for k in model.state_dict())
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 3, 64, 96), torch.tensor([[0.5, 1.0, 2.0]] * 2))
    # relative depth 1 + row maps onto 0.5 + 0.01 row exactly: scale 0.01, shift 0.49.
    assert torch.allclose(out.global_depth, out.dff_depth, atol=1e-5)
    assert torch.allclose(out.scale_map, torch.ones_like(out.scale_map), atol=1e-4)
    assert out.metric_depth.shape == (2, 1, 64, 96)
    assert torch.all(out.metric_depth >= 0.02)


def test_unknown_alignment_is_rejected():
    with pytest.raises(ValueError, match="alignment"):
        HybridDepthNet(ConstantInverseDepth(), PlaneDFF(), alignment="ransac")


def test_zero_inverse_depth_becomes_zero_relative_depth():
    class ZeroInverse(nn.Module):
        def forward(self, rgb):
            return torch.zeros(rgb.shape[0], 1, *rgb.shape[-2:])

    model = HybridDepthNet(ZeroInverse(), PlaneDFF())
    assert torch.all(model.relative_depth(torch.rand(1, 3, 8, 8)) == 0)
