"""HybridDepthBackend: refuses without weights, reference preprocessing, masks, resizing, timings."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from support.golden_fill import filled_state_dict
from support.stacks import DISTANCES_M, WORKING, textured_stack
from hybriddepth_ros.core.depth.registry import create_depth_backend
from hybriddepth_ros.core.stack.focal_stack import FocalStackError
from hybriddepth_ros.core.depth.hybriddepth import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HybridDepthBackend,
)
from hybriddepth_ros.core.models.metric_branch import confidence_from_std
from hybriddepth_ros.core.models.weights import WeightsError
from hybriddepth_ros.core.models.hybriddepth import STAGES, HybridDepthNet


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A backend loaded through the real checkpoint path from a golden-filled Lightning-style file."""
    source = HybridDepthNet()
    path = tmp_path_factory.mktemp("weights") / "hybriddepth.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in filled_state_dict(source, "model.").items()}}, path)
    return HybridDepthBackend(device="cpu", checkpoint_path=str(path), working_size=WORKING)


@pytest.fixture(scope="module")
def reference_result(backend):
    stack = textured_stack(*WORKING)
    return stack, backend.estimate(stack)


def test_refuses_to_run_without_weights():
    with pytest.raises(ValueError, match="needs checkpoint_path"):
        HybridDepthBackend(device="cpu")
    with pytest.raises(ValueError, match="needs checkpoint_path"):
        create_depth_backend("hybriddepth", device="cpu")


def test_unreadable_checkpoint_is_a_value_error(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        HybridDepthBackend(device="cpu", checkpoint_path=str(tmp_path / "missing.ckpt"))


@pytest.mark.parametrize(
    "option", [{"relative_input": "sharpest"}, {"alignment": "median"}, {"metric_branch": "lidar"}, {"working_size": (8, 8)}]
)
def test_bad_options_are_rejected(option):
    with pytest.raises(ValueError):
        HybridDepthBackend(device="cpu", checkpoint_path="unused.ckpt", **option)


def test_output_is_the_network_on_reference_preprocessing(backend, reference_result):
    stack, result = reference_result
    frames = torch.from_numpy(stack.frames).permute(0, 3, 1, 2).float()[None] / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    distances = torch.tensor(DISTANCES_M, dtype=torch.float32)[None]
    with torch.inference_mode():
        expected = backend.model(frames[:, 0], (frames - mean) / std, distances)
    assert result.depth_m.shape == WORKING and result.depth_m.dtype == np.float32
    np.testing.assert_allclose(result.depth_m, expected.metric_depth[0, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        result.confidence, confidence_from_std(expected.dff_std, distances)[0, 0].numpy(), atol=1e-6
    )
    assert set(STAGES) <= set(result.timings_s) and all(t >= 0 for t in result.timings_s.values())


def test_confidence_mapping_known_values():
    distances = torch.tensor([[0.5, 1.5, 2.5]])
    std = torch.tensor([0.0, 0.5, 1.0, 3.0])
    assert confidence_from_std(std, distances).tolist() == [1.0, 0.5, 0.0, 0.0]


def test_valid_mask_gives_nan_depth_and_zero_confidence(backend, reference_result):
    stack, unmasked = reference_result
    mask = np.ones(WORKING, dtype=bool)
    mask[:10, :20] = False
    result = backend.estimate(dataclasses.replace(stack, valid_mask=mask))
    assert np.all(np.isnan(result.depth_m[:10, :20])) and np.all(result.confidence[:10, :20] == 0)
    # Alignment now ignores the masked pixels, so values differ slightly but stay close.
    np.testing.assert_allclose(result.depth_m[mask], unmasked.depth_m[mask], rtol=0.05)


def test_an_unregistered_stack_is_refused_not_registered_again(backend):
    with pytest.raises(FocalStackError, match="needs a registered stack: run it through DepthFusion"):
        backend.estimate(textured_stack(*WORKING, registered=False))


def test_resized_all_in_focus_weighted_run(backend):
    confident = HybridDepthBackend(
        device="cpu", model=backend.model, working_size=WORKING,
        relative_input="all_in_focus", alignment="confidence_weighted",
    )
    assert backend.model.alignment == "least_squares", "the shared model keeps its own settings"
    result = confident.estimate(textured_stack(120, 160, seed=1))
    assert result.depth_m.shape == (120, 160) and result.confidence.shape == (120, 160)
    assert np.all(np.isfinite(result.depth_m)) and np.all(result.depth_m >= 0.02)
    assert 0.0 <= result.confidence.min() and result.confidence.max() <= 1.0


def test_weight_free_metric_branch(backend):
    stack = textured_stack(*WORKING, seed=2)
    sharp = stack.frames[0]
    # A fronto-parallel plane in focus in frame 1: the others are blurred.
    blurred = [cv2.GaussianBlur(sharp, (0, 0), s) if s else sharp for s in (2.0, 0, 1.5, 3.0)]
    stack = dataclasses.replace(stack, frames=np.stack(blurred))
    focus = HybridDepthBackend(device="cpu", model=backend.model, working_size=WORKING, metric_branch="focus_measure")
    result = focus.estimate(stack)
    assert result.depth_m.shape == WORKING
    assert np.isfinite(result.depth_m).mean() > 0.9
    with pytest.raises(ValueError, match="no usable pixel"):
        focus.estimate(textured_stack(*WORKING))  # equally sharp frames: no focus peak anywhere


def test_benchmark_reports_every_stage_and_runs_downstream_hooks():
    from hybriddepth_ros.tools.benchmark import END_TO_END, format_report, run_benchmark

    seen = []
    report = run_benchmark(
        device="cpu", frames=3, height_px=64, width_px=96, repeats=2,
        downstream={"point_cloud": lambda stack, result: seen.append(result.depth_m.shape)},
    )
    assert seen == [(64, 96)] * 3, "hook runs on the cold call and on every repeat"
    for stage in (*STAGES, "point_cloud", END_TO_END):
        assert report.cold_s[stage] >= 0 and report.warm_median_s[stage] >= 0
    assert report.cold_s[END_TO_END] >= sum(report.cold_s[s] for s in STAGES)
    assert report.peak_memory_mib > 0
    # Counted work: ViT-S at its fixed 518x518 input is ~80 GFLOP whatever the stack size.
    assert set(report.gflops) == set(STAGES)
    assert 70 < report.gflops["relative"] < 90
    assert report.gflops["dff"] > 0 and report.gflops["refinement"] > 0
    assert "point_cloud" in format_report(report)


def test_convolutions_run_channels_last_on_cpu_with_the_same_result():
    net = HybridDepthNet()
    net.load_state_dict(filled_state_dict(net, "model."))
    net.eval()
    generator = torch.Generator().manual_seed(0)
    aif = torch.rand(1, 3, *WORKING, generator=generator)
    stack = torch.rand(1, len(DISTANCES_M), 3, *WORKING, generator=generator)
    distances_m = torch.as_tensor(DISTANCES_M, dtype=torch.float32)[None]
    with torch.inference_mode():
        expected = net(aif, stack, distances_m)
    backend = HybridDepthBackend(device="cpu", model=net, working_size=WORKING)  # converts the shared modules
    convolutions = [m for m in backend.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions)
    with torch.inference_mode():
        actual = backend.model(aif, stack, distances_m)
    for name, tensor in vars(expected).items():
        torch.testing.assert_close(getattr(actual, name), tensor, rtol=1e-4, atol=1e-5, msg=name)
