"""Depth Anything relative-depth branch: checkpoint key layout, golden equality, positional
embedding resampling, V1/V2 tap layers and the strict weight-file loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from support.golden_fill import GOLDEN_PATH, MANIFEST_PATH, filled_state_dict, rel_err
from hybriddepth_ros.core.models.depth_anything import (
    DepthAnything,
    predict_relative_depth,
)
from hybriddepth_ros.core.models.vit import DinoViT
from hybriddepth_ros.core.models.weights import load_weights

BRANCH_PREFIX = "model.depth_anything."
GOLDEN_TOLERANCE = 1e-4


def needs_reference():
    if not (GOLDEN_PATH.exists() and MANIFEST_PATH.exists()):
        pytest.skip("../shared/reference is absent")


@pytest.fixture(scope="module")
def golden_model() -> DepthAnything:
    needs_reference()
    model = DepthAnything(encoder="vits")
    model.load_state_dict(filled_state_dict(model, BRANCH_PREFIX), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def golden():
    needs_reference()
    with np.load(GOLDEN_PATH) as arrays:
        return {name: arrays[name] for name in arrays.files}


def test_state_dict_matches_hybriddepth_manifest():
    needs_reference()
    manifest = json.loads(MANIFEST_PATH.read_text())
    expected = {k[len(BRANCH_PREFIX) :]: list(v) for k, v in manifest.items() if k.startswith(BRANCH_PREFIX)}
    actual = {k: list(v.shape) for k, v in DepthAnything(encoder="vits").state_dict().items()}
    assert len(expected) == 239
    assert actual == expected


def test_forward_matches_golden(golden_model, golden):
    with torch.no_grad():
        out = golden_model(torch.from_numpy(golden["depth_anything_in"]))
    assert out.shape == (1, 518, 518)
    assert rel_err(out.numpy(), golden["depth_anything_out"]) <= GOLDEN_TOLERANCE


def test_predict_relative_depth_matches_golden(golden_model, golden):
    aif = torch.from_numpy(golden["aif"])
    seen_inputs = []
    hook = golden_model.register_forward_pre_hook(lambda _module, args: seen_inputs.append(args[0].clone()))
    try:
        with torch.no_grad():
            relative = predict_relative_depth(golden_model, aif)
    finally:
        hook.remove()
    assert relative.shape == (1, 1, 192, 256)
    assert rel_err(seen_inputs[0].numpy(), golden["depth_anything_in"]) <= GOLDEN_TOLERANCE
    depth = 1.0 / relative
    depth[torch.isinf(depth)] = 0
    assert rel_err(depth.numpy(), golden["relative_depth"]) <= GOLDEN_TOLERANCE


def cubic_resample_1d(values: np.ndarray, scale: float, out_len: int) -> np.ndarray:
    """Independent bicubic (Keys, a=-0.75, edge-clamped, half-pixel) resampling by `scale`, as torch defines it."""

    def weight(t):
        t = abs(t)
        if t <= 1:
            return (1.25 * t - 2.25) * t * t + 1
        if t < 2:
            return ((-0.75 * t + 3.75) * t - 6) * t + 3
        return 0.0

    out = np.zeros(out_len)
    for j in range(out_len):
        src = (j + 0.5) / scale - 0.5
        base = int(np.floor(src))
        for i in range(base - 1, base + 3):
            out[j] += weight(src - i) * values[min(max(i, 0), len(values) - 1)]
    return out


def test_positional_embedding_resampling_matches_dinov2_numerics():
    vit = DinoViT("vits")
    assert torch.equal(vit.positional_embedding(37, 37), vit.pos_embed)
    columns = np.arange(37, dtype=np.float64) ** 2 / 37
    with torch.no_grad():
        # Patch part varies only along the width axis (column index); class token is 5.
        vit.pos_embed[0, 0] = 5.0
        vit.pos_embed[0, 1:] = torch.from_numpy(np.tile(columns, 37)).float()[:, None]
        table = vit.positional_embedding(20, 10)
    assert table.shape == (1, 1 + 20 * 10, 384)
    assert torch.all(table[0, 0] == 5.0)
    grid = table[0, 1:, 0].reshape(20, 10).numpy()
    # Constant along height, and along width the scale factor (10 + 0.1) / 37, not the size 10.
    np.testing.assert_allclose(grid, np.broadcast_to(grid[:1], (20, 10)), atol=1e-4)
    np.testing.assert_allclose(grid[0], cubic_resample_1d(columns, 10.1 / 37, 10), atol=1e-4)


def seeded_model(version: int = 1) -> DepthAnything:
    """Default init, but with the golden rule's positive last bias so the ReLU output is not all zero."""
    torch.manual_seed(0)
    model = DepthAnything(encoder="vits", version=version).eval()
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(2.0)
    return model


def test_non_square_input_runs_at_its_own_size():
    model = seeded_model()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 14 * 4, 14 * 6))
    assert out.shape == (2, 56, 84)
    assert torch.all(out >= 0) and out.max() > 0.1
    with pytest.raises(ValueError, match="multiple of the 14"):
        model(torch.rand(1, 3, 50, 56))


def test_versions_tap_different_blocks_with_the_same_keys():
    v1, v2 = seeded_model(version=1), seeded_model(version=2)
    assert v1.head_block_indices == (8, 9, 10, 11)
    assert v2.head_block_indices == (2, 5, 8, 11)
    assert v1.state_dict().keys() == v2.state_dict().keys()
    torch.testing.assert_close(v2.state_dict(), v1.state_dict(), rtol=0, atol=0)
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        out_v1, out_v2 = v1(x), v2(x)
    assert out_v1.abs().max() > 0.1
    assert (out_v1 - out_v2).abs().max() > 1e-3 * out_v1.abs().max()
    with pytest.raises(ValueError, match="version"):
        DepthAnything("vits", version=3)


@pytest.fixture(scope="module")
def small_weights():
    torch.manual_seed(0)
    return DepthAnything("vits").state_dict()


def test_loader_reads_plain_nested_and_prefixed_files(tmp_path, small_weights):
    plain = tmp_path / "depth_anything_vits14.pth"
    torch.save(small_weights, plain)
    model = DepthAnything("vits")
    load_weights(model, plain)
    assert torch.equal(model.depth_head.scratch.output_conv1.weight, small_weights["depth_head.scratch.output_conv1.weight"])

    nested = tmp_path / "lightning.ckpt"
    hybrid = {BRANCH_PREFIX + k: v for k, v in small_weights.items()}
    hybrid["model.DFF_model.conv.weight"] = torch.zeros(1)  # another branch of a full checkpoint
    torch.save({"state_dict": hybrid, "epoch": 3}, nested)
    model = DepthAnything("vits", version=2)
    load_weights(model, nested)
    assert torch.equal(model.pretrained.pos_embed, small_weights["pretrained.pos_embed"])

    wrapped = tmp_path / "data_parallel.pth"
    torch.save({"model": {"module." + k: v for k, v in small_weights.items()}}, wrapped)
    load_weights(DepthAnything("vits"), wrapped)


def test_loader_rejects_truncated_file(tmp_path, small_weights):
    good = tmp_path / "good.pth"
    torch.save(small_weights, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pth"):
        load_weights(DepthAnything("vits"), truncated)


def test_loader_names_missing_and_unexpected_keys(tmp_path, small_weights):
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in small_weights.items() if k != "pretrained.norm.bias"}, missing)
    with pytest.raises(ValueError, match=r"missing.pth.*1 missing keys \[pretrained\.norm\.bias\]"):
        load_weights(DepthAnything("vits"), missing)

    extra = tmp_path / "extra.pth"
    torch.save({**small_weights, "depth_head.readout.weight": torch.zeros(2)}, extra)
    with pytest.raises(ValueError, match=r"extra.pth.*1 unexpected keys \[depth_head\.readout\.weight\]"):
        load_weights(DepthAnything("vits"), extra)


def test_loader_rejects_other_encoder_size(tmp_path, small_weights):
    path = tmp_path / "vits.pth"
    torch.save(small_weights, path)
    with pytest.raises(ValueError, match=r"shape mismatches \[depth_head"):
        load_weights(DepthAnything("vitb"), path)
