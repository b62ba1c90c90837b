"""dataset_recorder_node over DDS: a focal stack and a depth camera's image, paired by stamp, become a
recording folder the evaluation reads back; a depth image of another view is refused on /diagnostics."""

from __future__ import annotations

import copy

import cv2
import numpy as np

from support.ros_harness import Probe, spin_until

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hybriddepth_ros.core.data import open_dataset  # noqa: E402
from hybriddepth_ros.msg import FocalStack as FocalStackMsg  # noqa: E402
from hybriddepth_ros.nodes import conversions  # noqa: E402
from hybriddepth_ros.nodes.dataset_recorder_node import DIAGNOSTIC_NAME, DatasetRecorderNode  # noqa: E402
from hybriddepth_ros.nodes.qos import stream_qos  # noqa: E402

DEPTH_TOPIC = "test_camera/aligned_depth"


def depth_image(depth_mm: np.ndarray, stamp_s: float) -> Image:
    """A 16UC1 image in millimetres, as RGB-D camera drivers publish aligned depth."""
    header = Header(frame_id="test_camera_color_optical_frame")
    conversions.seconds_to_stamp(stamp_s, header.stamp)
    msg = Image(header=header, height=depth_mm.shape[0], width=depth_mm.shape[1], encoding="16UC1")
    msg.is_bigendian = 0
    msg.step = depth_mm.shape[1] * 2
    msg.data = np.ascontiguousarray(depth_mm, dtype="<u2").tobytes()
    return msg


def restamped(msg, stamp_s: float):
    msg = copy.deepcopy(msg)
    conversions.seconds_to_stamp(stamp_s, msg.header.stamp)
    return msg


def test_records_stamp_paired_samples_and_refuses_another_view(ros_context, simulated, tmp_path):
    context, executor, add = ros_context
    stack_msg, truth_m = simulated
    parameters = {"output_dir": str(tmp_path), "depth_topic": DEPTH_TOPIC, "slop_s": 0.02}
    node = add(DatasetRecorderNode(context=context,
                                   parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))
    probe = add(Probe("recorder_probe", context=context))
    diagnostics = probe.watch(DiagnosticArray, "/diagnostics", 50)
    stacks = probe.create_publisher(FocalStackMsg, "focal_stack", stream_qos())
    depths = probe.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data)

    # The depth camera at half the focus camera's resolution, 5 ms after the stack's reference frame.
    height, width = truth_m.shape
    half_mm = np.round(cv2.resize(truth_m, (width // 2, height // 2), interpolation=cv2.INTER_NEAREST) * 1000)
    first = restamped(stack_msg, 1000.0)
    folder = tmp_path / "stack_1000000000000"

    def publish_pair(stack, depth):
        stacks.publish(stack)
        depths.publish(depth)

    assert spin_until(executor, folder.exists, 30.0,
                      every=lambda: publish_pair(first, depth_image(half_mm.astype(np.uint16), 1000.005)), every_s=0.5)
    dataset = open_dataset(None, tmp_path)
    assert len(dataset) == 1 and node.samples_recorded == 1
    sample = dataset[0]
    expected_stack = conversions.focal_stack_from_msg(first)
    np.testing.assert_array_equal(sample.stack.frames, expected_stack.frames)
    np.testing.assert_allclose(sample.stack.focus_distances_m, expected_stack.focus_distances_m, atol=1e-6)  # µm in names
    assert sample.stack.intrinsics == expected_stack.intrinsics and sample.stack.registered == expected_stack.registered
    expected_depth = cv2.resize((half_mm / 1000.0).astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(sample.depth_m, expected_depth, rtol=1e-6)

    # A depth image of another aspect ratio is not in the focus camera's view: refused, nothing written.
    second = restamped(stack_msg, 2000.0)
    square = np.full((height, height), 1500, np.uint16)

    def refused():
        return [s for a in diagnostics for s in a.status
                if s.name == DIAGNOSTIC_NAME and s.level == DiagnosticStatus.ERROR]

    assert spin_until(executor, lambda: bool(refused()), 30.0,
                      every=lambda: publish_pair(second, depth_image(square, 2000.003)), every_s=0.5)
    assert "different aspect ratio" in refused()[0].message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack_1000000000000"]
    recorded = [s for a in diagnostics for s in a.status if s.name == DIAGNOSTIC_NAME and s.level == DiagnosticStatus.OK]
    assert recorded and {kv.key: kv.value for kv in recorded[0].values}["samples_recorded"] == "1"
