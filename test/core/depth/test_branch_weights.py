"""HybridDepthBackend built from stand-alone branch files (Depth Anything V1/V2, DFV), with or without a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.golden_fill import filled_state_dict
from support.stacks import WORKING, textured_stack

from hybriddepth_ros.core.capture.simulated import SimulatedCapture
from hybriddepth_ros.core.stack.focal_stack import diopter_sweep
from hybriddepth_ros.core.depth.hybriddepth import GlobalDepthOutput, HybridDepthBackend
from hybriddepth_ros.core.models.depth_anything import DepthAnything
from hybriddepth_ros.core.models.dfv import DFVNet
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """A Depth Anything V2-style branch file, a DFV release-style file ('module.' keys) and a full checkpoint."""
    folder = tmp_path_factory.mktemp("branches")
    relative = DepthAnything("vits", version=2)
    torch.manual_seed(1)
    relative_state = {k: torch.randn_like(v) * 0.02 if v.is_floating_point() else v
                      for k, v in relative.state_dict().items()}
    torch.save(relative_state, folder / "depth_anything_v2_vits.pth")
    dfv_state = filled_state_dict(DFVNet(), "model.DFF_model.")
    torch.save({"state_dict": {"module." + k: v for k, v in dfv_state.items()}}, folder / "dfv.tar")
    full = filled_state_dict(HybridDepthNet(), "model.")
    torch.save({"state_dict": {"model." + k: v for k, v in full.items()}}, folder / "hybriddepth.ckpt")
    return {"relative": str(folder / "depth_anything_v2_vits.pth"), "dfv": str(folder / "dfv.tar"),
            "checkpoint": str(folder / "hybriddepth.ckpt"), "relative_state": relative_state}


def test_relative_branch_file_with_the_weight_free_dff_gives_globally_aligned_depth(weight_files):
    backend = HybridDepthBackend(device="cpu", relative_weights_path=weight_files["relative"], relative_version=2,
                                 metric_branch="focus_measure", working_size=WORKING)
    assert isinstance(backend.model.ScaleMapLearner, GlobalDepthOutput)
    loaded = backend.model.depth_anything.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weight_files["relative_state"].items())
    stack = SimulatedCapture(focus_distances_m=diopter_sweep(0.3, 5.0, 8), width=WORKING[1], height=WORKING[0],
                             seed=1).capture_stack()
    result = backend.estimate(stack)
    assert result.depth_m.shape == WORKING
    assert np.isfinite(result.depth_m).any()
    # No refiner: the output is the relative depth under one scale and shift.
    with torch.inference_mode():
        frame = torch.from_numpy(stack.reference_frame).permute(2, 0, 1)[None].float() / 255.0
        relative = backend.model.relative_depth(frame)[0, 0].numpy()
    known = np.isfinite(result.depth_m)
    design = np.stack([relative[known], np.ones(known.sum())], axis=1)
    _, residual, *_ = np.linalg.lstsq(design, result.depth_m[known].astype(np.float64), rcond=None)
    assert residual[0] / known.sum() < 1e-8


def test_relative_and_dfv_branch_files_run_without_a_checkpoint(weight_files):
    backend = HybridDepthBackend(device="cpu", relative_weights_path=weight_files["relative"], relative_version=2,
                                 dfv_weights_path=weight_files["dfv"], working_size=WORKING)
    assert isinstance(backend.model.DFF_model, DFVNet)
    assert np.isfinite(backend.estimate(textured_stack(*WORKING)).depth_m).all()


def test_a_branch_file_replaces_the_checkpoints_branch(weight_files):
    with_checkpoint = HybridDepthBackend(device="cpu", checkpoint_path=weight_files["checkpoint"], working_size=WORKING)
    replaced = HybridDepthBackend(device="cpu", checkpoint_path=weight_files["checkpoint"], working_size=WORKING,
                                  relative_weights_path=weight_files["relative"], relative_version=2)
    assert not isinstance(replaced.model.ScaleMapLearner, GlobalDepthOutput)
    stack = textured_stack(*WORKING)
    assert not np.allclose(with_checkpoint.estimate(stack).depth_m, replaced.estimate(stack).depth_m)


def test_a_relative_branch_alone_without_a_metric_branch_is_refused(weight_files):
    with pytest.raises(ValueError, match="dfv_weights_path"):
        HybridDepthBackend(device="cpu", relative_weights_path=weight_files["relative"], relative_version=2)


def test_a_branch_file_of_the_wrong_size_names_the_file(weight_files):
    with pytest.raises(ValueError, match="depth_anything_v2_vits.pth"):
        HybridDepthBackend(device="cpu", relative_weights_path=weight_files["relative"], relative_encoder="vitb",
                           metric_branch="focus_measure")
