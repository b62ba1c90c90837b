"""The DFV depth-from-focus network: checkpoint layout, golden equivalence, sizes, loading."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support.golden_fill import GOLDEN_PATH, MANIFEST_PATH, filled_state_dict, rel_err
from hybriddepth_ros.core.models.dfv import (
    Conv3d,
    DFVNet,
    differential_volume,
    expected_focus_distance,
    padded_size,
    pool_grid_counts,
)
from hybriddepth_ros.core.models.resnet_encoder import ResNet18Encoder
from hybriddepth_ros.core.models.weights import load_weights

PREFIX = "model.DFF_model."
GOLDEN_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def filled_model() -> DFVNet:
    """The network with the golden fill, in eval mode (shared: building and filling takes a second)."""
    torch.manual_seed(0)
    model = DFVNet()
    model.load_state_dict(filled_state_dict(model, PREFIX), strict=True)
    return model.eval()


def _random_stack(batch: int, frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, height, width, generator=generator)


def test_state_dict_matches_manifest_keys_and_shapes():
    if not MANIFEST_PATH.exists():
        pytest.skip("../shared reference manifest absent")
    manifest = json.loads(MANIFEST_PATH.read_text())
    expected = {key[len(PREFIX):]: list(shape) for key, shape in manifest.items() if key.startswith(PREFIX)}
    actual = {key: list(tensor.shape) for key, tensor in DFVNet().state_dict().items()}
    assert len(expected) == 412
    assert set(actual) == set(expected)
    assert actual == expected


def test_golden_depth_and_std(filled_model):
    if not GOLDEN_PATH.exists():
        pytest.skip("../shared golden file absent")
    golden = np.load(GOLDEN_PATH)
    with torch.no_grad():
        depth_m, std_m = filled_model(
            torch.from_numpy(golden["focal_stack"]), torch.from_numpy(golden["focus_distances"])
        )
    assert depth_m.shape == golden["dff_depth"].shape == (1, 1, 192, 256)
    assert std_m.shape == golden["dff_std"].shape
    assert rel_err(depth_m.numpy(), golden["dff_depth"]) <= GOLDEN_TOLERANCE
    assert rel_err(std_m.numpy(), golden["dff_std"]) <= GOLDEN_TOLERANCE


def test_non_multiple_size_is_padded_by_edge_replication_and_cropped_back(filled_model):
    stack = _random_stack(1, 3, 50, 70)
    distances_m = torch.tensor([[0.5, 1.0, 2.0]])
    with torch.no_grad():
        depth_m, std_m = filled_model(stack, distances_m)
        padded = F.pad(stack.reshape(3, 3, 50, 70), (0, 26, 0, 14), mode="replicate").reshape(1, 3, 3, 64, 96)
        depth_padded_m, std_padded_m = filled_model(padded, distances_m)
    assert depth_m.shape == std_m.shape == (1, 1, 50, 70)
    torch.testing.assert_close(depth_m, depth_padded_m[..., :50, :70], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std_m, std_padded_m[..., :50, :70], rtol=1e-5, atol=1e-6)
    assert float(depth_m.min()) >= 0.5 - 1e-6 and float(depth_m.max()) <= 2.0 + 1e-6
    assert float(std_m.min()) >= 0.0


def test_batch_items_are_independent(filled_model):
    stacks = _random_stack(2, 3, 64, 64, seed=1)
    distances_m = torch.tensor([[0.3, 0.6, 1.0], [1.0, 2.0, 4.0]])
    with torch.no_grad():
        depth_m, std_m = filled_model(stacks, distances_m)
        for item in range(2):
            alone_depth_m, alone_std_m = filled_model(stacks[item : item + 1], distances_m[item : item + 1])
            torch.testing.assert_close(depth_m[item : item + 1], alone_depth_m, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(std_m[item : item + 1], alone_std_m, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias, stride", [(False, 1), (True, 1), (True, 2)])
def test_conv3d_matches_torch_and_runs_on_onednn_for_cpu_inference(bias, stride):
    torch.manual_seed(1)
    fast = Conv3d(8, 4, 3, padding=1, stride=stride, bias=bias)
    plain = torch.nn.Conv3d(8, 4, 3, padding=1, stride=stride, bias=bias)
    plain.load_state_dict(fast.state_dict())
    # Batch 1 and channels*frames*rows <= 20480: torch alone picks slow_conv3d here.
    volume = torch.rand(1, 8, 5, 12, 16)
    with torch.inference_mode(), torch.profiler.profile() as profile:
        fast_out = fast(volume)
    kernels = {event.key for event in profile.key_averages()}
    assert "aten::mkldnn_convolution" in kernels and "aten::slow_conv3d_forward" not in kernels
    with torch.inference_mode():
        torch.testing.assert_close(fast_out, plain(volume), rtol=1e-5, atol=1e-6)
        # Traced by torch.compile, the shortcut steps aside (its op cannot be traced).
        torch.testing.assert_close(torch.compile(fast, backend="eager")(volume), fast_out, rtol=1e-5, atol=1e-6)
    # Training keeps torch's own path (and its autograd).
    volume.requires_grad_(True)
    fast(volume).sum().backward()
    assert volume.grad is not None


@pytest.mark.parametrize(
    "size, expected",
    [((480, 640), (480, 640)), ((240, 320), (256, 320)), ((250, 333), (256, 352)), ((20, 100), (64, 128))],
)
def test_padded_size(size, expected):
    assert padded_size(*size) == expected


def test_rejects_bad_shapes(filled_model):
    with pytest.raises(ValueError, match="focus_distances_m"):
        filled_model(_random_stack(1, 3, 64, 64), torch.ones(1, 4))
    with pytest.raises(ValueError, match="at least 2 frames"):
        filled_model(_random_stack(1, 1, 64, 64), torch.ones(1, 1))
    with pytest.raises(ValueError, match="focal_stack"):
        filled_model(torch.rand(1, 3, 64, 64), torch.ones(1, 3))


def test_expected_focus_distance_known_answers():
    distances_m = torch.tensor([[1.0, 2.0, 3.0]])
    one_hot = torch.zeros(1, 3, 2, 2)
    one_hot[:, 2] = 1.0
    depth_m, std_m = expected_focus_distance(one_hot, distances_m)
    torch.testing.assert_close(depth_m, torch.full((1, 1, 2, 2), 3.0))
    torch.testing.assert_close(std_m, torch.zeros(1, 1, 2, 2))

    uniform = torch.full((1, 3, 2, 2), 1.0 / 3.0)
    depth_m, std_m = expected_focus_distance(uniform, distances_m)
    torch.testing.assert_close(depth_m, torch.full((1, 1, 2, 2), 2.0))
    torch.testing.assert_close(std_m, torch.full((1, 1, 2, 2), math.sqrt(2.0 / 3.0)))


def test_differential_volume_known_answer():
    volume = torch.tensor([1.0, 4.0, 9.0]).reshape(1, 1, 3, 1, 1)
    assert differential_volume(volume).flatten().tolist() == [-3.0, -5.0, 9.0]


def test_pool_grid_counts():
    assert pool_grid_counts((6, 8)) == [1, 1, 2, 3]
    assert pool_grid_counts((5, 6, 8)) == [1, 1, 1, 2]
    assert pool_grid_counts((15, 20)) == [1, 3, 5, 7]
    with pytest.raises(ValueError):
        pool_grid_counts((1, 8))


def test_resnet18_encoder_stage_shapes_and_size():
    encoder = ResNet18Encoder().eval()
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]
    assert sum(p.numel() for p in encoder.parameters()) == 11_689_512  # ResNet-18 with its ImageNet head


def test_load_dfv_weights_strips_module_prefix(tmp_path):
    source = DFVNet()
    path = tmp_path / "dfv_release.tar"
    torch.save({"epoch": 7, "state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    target = load_weights(DFVNet(), path)
    for key, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], tensor), key

    bare_path = tmp_path / "bare.pth"
    torch.save(source.state_dict(), bare_path)
    load_weights(DFVNet(), bare_path)


def test_load_dfv_weights_reports_missing_and_unexpected_keys(tmp_path):
    state = {"module." + k: v for k, v in DFVNet().state_dict().items()}
    del state["module.decoder3.classify.2.0.bias"]
    state["module.disp_reg.extra"] = torch.zeros(1)
    path = tmp_path / "broken_dfv.tar"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="broken_dfv.tar") as error:
        load_weights(DFVNet(), path)
    assert "decoder3.classify.2.0.bias" in str(error.value)
    assert "disp_reg.extra" in str(error.value)
