"""depth_fusion_node with the learned `hybriddepth` backend over DDS, and its weight-free fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.golden_fill import filled_state_dict
from support.fusion_rig import FRAME_ID, HEIGHT, WIDTH, FusionRig, restamp

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet  # noqa: E402
from hybriddepth_ros.nodes import conversions  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    """An official-layout Lightning checkpoint (dict with `state_dict`, `model.` keys), golden-filled."""
    path = tmp_path_factory.mktemp("weights") / "NYUBest5-filled.ckpt"
    state = filled_state_dict(HybridDepthNet(), "model.")
    torch.save({"state_dict": {"model." + key: value for key, value in state.items()}, "epoch": 0}, path)
    return str(path)


def test_hybriddepth_backend_publishes_finite_depth_of_the_stack_size(ros_context, simulated, checkpoint_path):
    stack_msg, _ = simulated
    rig = FusionRig(
        ros_context, backend="hybriddepth", checkpoint_path=checkpoint_path, confidence_threshold=0.0,
        working_height=96, working_width=128, max_depth_m=100.0, min_depth_m=0.01,
    )
    assert rig.node._backend_name == "hybriddepth"
    status = rig.send(restamp(stack_msg, 5000.0), timeout_s=120.0)
    assert status.level == DiagnosticStatus.OK, status.message
    values = {kv.key: kv.value for kv in status.values}
    assert {"relative_s", "dff_s", "alignment_s", "refinement_s"} <= values.keys()
    depth_msgs, confidence_msgs, _, clouds = rig.outputs_for(5000.0)
    depth = conversions.float_image_to_array(depth_msgs[0])
    assert depth.shape == (HEIGHT, WIDTH) and depth_msgs[0].encoding == "32FC1"
    assert depth_msgs[0].header.frame_id == FRAME_ID
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert (clouds[0].height, clouds[0].width) == (HEIGHT, WIDTH)


def test_without_checkpoint_the_node_falls_back_to_the_weight_free_backend(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, backend="hybriddepth", checkpoint_path="")
    assert rig.node._backend_name == "focus_measure"
    assert rig.send(restamp(stack_msg, 5100.0)).level == DiagnosticStatus.OK


def test_a_corrupt_checkpoint_falls_back_and_names_the_file(ros_context, simulated, tmp_path, capfd):
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, backend="hybriddepth", checkpoint_path=str(bad))
    assert rig.node._backend_name == "focus_measure"
    logged = capfd.readouterr().err
    assert str(bad) in logged and "weight-free" in logged
    assert rig.send(restamp(stack_msg, 5200.0)).level == DiagnosticStatus.OK


def test_relative_branch_file_with_weight_free_dff_runs_in_the_node(ros_context, simulated, tmp_path):
    """The modular configuration: Depth Anything weights alone, the focus-measure DFF as metric branch."""
    from hybriddepth_ros.core.models.depth_anything import DepthAnything

    relative_file = tmp_path / "depth_anything_vits14.pth"
    torch.save(filled_state_dict(DepthAnything("vits"), "model.depth_anything."), relative_file)
    stack_msg, _ = simulated
    rig = FusionRig(
        ros_context, backend="hybriddepth", relative_weights_path=str(relative_file), metric_branch="focus_measure",
        working_height=HEIGHT, working_width=WIDTH, confidence_threshold=0.0,
    )
    assert rig.node._backend_name == "hybriddepth"
    status = rig.send(restamp(stack_msg, 5300.0), timeout_s=120.0)
    assert status.level == DiagnosticStatus.OK, status.message
    depth_msgs, *_ = rig.outputs_for(5300.0)
    assert np.isfinite(conversions.float_image_to_array(depth_msgs[0])).mean() > 0.5
