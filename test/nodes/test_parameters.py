"""Node parameters: one default each (node, core and config/pipeline.yaml agree), checked at start-up and at run time."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy

from hybriddepth_ros.msg import FocalStack as FocalStackMsg
from hybriddepth_ros.core.depth.fusion import DEFAULT_CONFIDENCE_THRESHOLD, DepthFusion
from hybriddepth_ros.nodes import conversions
from hybriddepth_ros.nodes.depth_fusion_node import FUSION_PARAMETERS, DepthFusionNode
from hybriddepth_ros.nodes.focus_sweep_node import SWEEP_PARAMETERS, FocusSweepNode
from hybriddepth_ros.nodes.parameters import UNSET_DOUBLE_ARRAY, ConfigurationError
from hybriddepth_ros.pipeline_plan import default_params_file
from support.fusion_rig import FusionRig, restamp
from support.ros_harness import Probe, spin_until


def _flatten(parameters: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("node, specs", [("focus_sweep_node", SWEEP_PARAMETERS), ("depth_fusion_node", FUSION_PARAMETERS)])
def test_config_file_lists_every_parameter_with_the_nodes_default(node, specs):
    configured = _flatten(yaml.safe_load(open(default_params_file()))[node]["ros__parameters"])
    declared = {spec.name: spec.default for spec in specs if spec.default is not UNSET_DOUBLE_ARRAY}
    assert set(configured) == set(declared), "config/pipeline.yaml and the node declare different parameters"
    for name, default in declared.items():
        assert configured[name] == default and type(configured[name]) is type(default), name


def test_node_core_and_config_share_the_fusion_defaults():
    defaults = {spec.name: spec.default for spec in FUSION_PARAMETERS}
    fusion = DepthFusion(backend=None)
    assert defaults["confidence_threshold"] == fusion.confidence_threshold == DEFAULT_CONFIDENCE_THRESHOLD
    assert (defaults["min_depth_m"], defaults["max_depth_m"]) == (fusion.min_depth_m, fusion.max_depth_m)


def test_every_parameter_is_described_and_run_time_ones_are_not_read_only():
    for spec in (*SWEEP_PARAMETERS, *FUSION_PARAMETERS):
        descriptor = spec.descriptor()
        assert descriptor.description.strip(), spec.name
        assert descriptor.read_only == (not spec.dynamic), spec.name
        if isinstance(spec.default, float) and spec.low is not None:
            assert descriptor.floating_point_range, spec.name
    dynamic = {spec.name for spec in (*SWEEP_PARAMETERS, *FUSION_PARAMETERS) if spec.dynamic}
    assert dynamic == {"rate_hz", "min_depth_m", "max_depth_m", "confidence_threshold", "publish_cloud",
                       "cloud_decimation"}


@pytest.mark.parametrize(
    "node_class, overrides, message",
    [
        (DepthFusionNode, {"precision": "fp64"}, "precision must be one of"),
        (DepthFusionNode, {"alignment": "median"}, "alignment must be one of"),
        (DepthFusionNode, {"working_height": 7}, "working_height must be >= 32"),
        (DepthFusionNode, {"backend": "lidar"}, "backend must be one of"),
        (DepthFusionNode, {"device": "gpu"}, "device must be"),
        (DepthFusionNode, {"confidence_threshold": 1.5}, "confidence_threshold must be <= 1.0"),
        (DepthFusionNode, {"min_depth_m": 0.0}, "min_depth_m must be > 0.0"),
        (FocusSweepNode, {"rate_hz": float("inf")}, "rate_hz must be finite"),
        (FocusSweepNode, {"rate_hz": 1e6}, "rate_hz must be <= 60.0"),
        (FocusSweepNode, {"width": 40000}, "width must be <= 8192"),
        (FocusSweepNode, {"focus_count": 1}, "focus_count must be >= 2"),
        (FocusSweepNode, {"focus_distances_m": [1e-30, 1.0]}, "focus_distances_m must be >= 0.01"),
        (FocusSweepNode, {"focus_distances_m": [1.0, 0.5]}, "strictly increasing"),
        (FocusSweepNode, {"phone.port": 70000}, "phone.port must be <= 65535"),
        (FocusSweepNode, {"phone.port": -1}, "phone.port must be >= 0"),
        (FocusSweepNode, {"frame_id": ""}, "frame_id must not be empty"),
    ],
)
def test_a_value_outside_its_range_or_set_is_a_configuration_error(ros_context, node_class, overrides, message):
    context, _, _ = ros_context
    parameters = [Parameter(name, value=value) for name, value in {"device": "cpu", **overrides}.items()
                  if name != "device" or node_class is DepthFusionNode]
    with pytest.raises(ConfigurationError, match=message):
        node_class(context=context, parameter_overrides=parameters)


def _set(rig, node_name: str = "depth_fusion_node", **values):
    """Call a node's set_parameters service like `ros2 param set` does; the per-parameter results."""
    client = rig.probe.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                                 for k, v in values.items()]))
    assert spin_until(rig.executor, future.done, 10.0)
    return future.result().results


def test_run_time_changes_apply_to_the_next_stack_and_bad_values_change_nothing(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, confidence_threshold=0.0)

    def coverage(stamp_s: float) -> float:
        assert rig.send(restamp(stack_msg, stamp_s)).level == DiagnosticStatus.OK
        depth_msgs, *_ = rig.outputs_for(stamp_s)
        return float(np.isfinite(conversions.float_image_to_array(depth_msgs[0])).mean())

    everything = coverage(7000.0)
    [result] = _set(rig, confidence_threshold=0.95)
    assert result.successful, result.reason
    strict = coverage(7001.0)
    assert strict < everything, "a higher threshold publishes fewer pixels"

    # Out of range (rclpy checks the descriptor first and names the parameter), or inconsistent (our callback).
    for bad, reason in (({"confidence_threshold": 1.5}, "confidence_threshold"),
                        ({"max_depth_m": 0.05}, "min_depth_m < max_depth_m"), ({"cloud_decimation": 0}, "cloud_decimation")):
        [result] = _set(rig, **bad)
        assert not result.successful and reason in result.reason, result.reason
    [result] = _set(rig, backend="hybriddepth")
    assert not result.successful and "read-only" in result.reason.lower()
    [result] = _set(rig, confidence_threshold="high")
    assert not result.successful
    assert rig.node.get_parameter("confidence_threshold").value == 0.95
    assert coverage(7002.0) == pytest.approx(strict), "refused changes left the node as it was"

    [result] = _set(rig, cloud_decimation=4)
    assert result.successful
    coverage(7003.0)
    *_, clouds = rig.outputs_for(7003.0)
    assert (clouds[0].height, clouds[0].width) == (30, 40)


def test_sweep_rate_changes_at_run_time_and_a_bad_rate_is_refused(ros_context):
    context, executor, add = ros_context
    overrides = [Parameter(k, value=v) for k, v in {"width": 16, "height": 12, "focus_count": 3, "rate_hz": 0.5}.items()]
    node = add(FocusSweepNode(context=context, parameter_overrides=overrides))
    probe = add(Probe("rate_probe", context=context))
    stacks = probe.watch(FocalStackMsg, "focal_stack")
    rig = type("Rig", (), {"probe": probe, "executor": executor})
    for bad, words in (({"rate_hz": 0.0}, "rate_hz"), ({"rate_hz": 1e3}, "rate_hz"), ({"width": 32}, "read-only")):
        [result] = _set(rig, "focus_sweep_node", **bad)
        assert not result.successful and words in result.reason, result.reason
    [result] = _set(rig, "focus_sweep_node", rate_hz=20.0)
    assert result.successful and node.get_parameter("rate_hz").value == 20.0
    started = len(stacks)
    assert spin_until(executor, lambda: len(stacks) >= started + 8, 10.0), "20 stacks/s after the change, not 0.5"


def test_every_topic_has_the_standard_qos_overrides_and_they_apply(ros_context):
    """qos_overrides.<topic>.publisher|subscription.<policy>: the parameters ROS users know, read-only."""
    context, _, add = ros_context
    overrides = [Parameter("device", value="cpu"),
                 Parameter("qos_overrides./depth/points.publisher.reliability", value="best_effort"),
                 Parameter("qos_overrides./focal_stack.subscription.depth", value=3)]
    node = add(DepthFusionNode(context=context, parameter_overrides=overrides))
    declared = set(node._parameters)
    for topic in ("/depth/image_rect", "/depth/confidence", "/depth/camera_info", "/depth/points",
                  "/rgb/image_rect", "/rgb/camera_info", "/diagnostics"):
        for policy in ("reliability", "history", "depth"):
            assert f"qos_overrides.{topic}.publisher.{policy}" in declared, (topic, policy)
    assert node.get_parameter("qos_overrides./depth/image_rect.publisher.reliability").value == "reliable"
    assert node.get_parameter("qos_overrides./depth/image_rect.publisher.history").value == "keep_last"
    assert node.get_parameter("qos_overrides./depth/image_rect.publisher.depth").value == 5
    [cloud] = node.get_publishers_info_by_topic("/depth/points")
    assert cloud.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    [stacks] = [sub for sub in node.subscriptions if sub.topic_name == "/focal_stack"]
    assert stacks.qos_profile.depth == 3 and stacks.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert node.describe_parameter("qos_overrides./focal_stack.subscription.depth").read_only
    sweep = add(FocusSweepNode(context=context, parameter_overrides=[
        Parameter("qos_overrides./focal_stack.publisher.reliability", value="best_effort")]))
    [published] = sweep.get_publishers_info_by_topic("/focal_stack")
    assert published.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert not any(spec.name == "reliable_qos" for spec in (*SWEEP_PARAMETERS, *FUSION_PARAMETERS))
