"""depth_fusion_node end to end over DDS: good stacks give depth, bad ones give diagnostics, never a crash."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from hybriddepth_ros.core.depth.pointcloud import back_project
from hybriddepth_ros.nodes import conversions
from hybriddepth_ros.nodes.diagnostics import DroppedStackCounter
from support.fusion_rig import FRAME_ID, HEIGHT, WIDTH, FusionRig, restamp
from support.ros_harness import spin_until


def test_stack_comes_back_as_metric_depth_confidence_info_and_cloud(ros_context, simulated):
    stack_msg, truth = simulated
    rig = FusionRig(ros_context, confidence_threshold=0.5)
    msg = restamp(stack_msg, 1000.25)
    status = rig.send(msg)
    assert status.level == DiagnosticStatus.OK, status.message
    depth_msgs, confidence_msgs, info_msgs, cloud_msgs = rig.outputs_for(1000.25)
    depth_msg, confidence_msg, info, cloud = depth_msgs[0], confidence_msgs[0], info_msgs[0], cloud_msgs[0]

    for image in (depth_msg, confidence_msg):
        assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, "32FC1")
        assert image.header.frame_id == FRAME_ID
        assert conversions.stamp_to_seconds(image.header.stamp) == pytest.approx(1000.25, abs=1e-6)
    assert (info.width, info.height, info.header.frame_id) == (WIDTH, HEIGHT, FRAME_ID)
    assert list(info.k) == pytest.approx(list(stack_msg.camera_info.k))

    depth = conversions.float_image_to_array(depth_msg)
    confidence = conversions.float_image_to_array(confidence_msg)
    known = np.isfinite(depth)
    assert 0.2 < known.mean() < 1.0, "some pixels known, the textureless ones NaN"
    assert np.all(confidence[known] >= 0.5) and np.all((confidence >= 0) & (confidence <= 1))
    abs_rel = np.abs(depth[known] - truth[known]) / truth[known]
    assert np.median(abs_rel) < 0.05
    assert abs_rel.mean() < 0.1

    assert (cloud.height, cloud.width, cloud.header.frame_id) == (HEIGHT, WIDTH, FRAME_ID)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    points = conversions.cloud_to_array(cloud)
    expected = back_project(depth, conversions.camera_info_to_intrinsics(info))
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=-1)
    np.testing.assert_array_equal(np.isnan(xyz), np.isnan(expected))
    np.testing.assert_allclose(xyz[known], expected[known], rtol=1e-6)
    rgb = points["rgb"].view(np.uint32)
    reference = conversions.image_to_rgb8(stack_msg.frames[stack_msg.reference_index])
    assert np.array_equal((rgb >> 16) & 255, reference[..., 0])


def test_stacks_that_arrive_while_fusing_are_dropped_counted_and_warned_about(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, publish_cloud=False)
    first = rig.send(restamp(stack_msg, 2000.0, sweep_number=10))
    values = {kv.key: kv.value for kv in first.values}
    assert first.level == DiagnosticStatus.OK and values["stacks_dropped"] == "0"
    # Four stacks while the node is busy (not spun): only the newest waits, three are dropped.
    for k in range(1, 5):
        rig.publisher.publish(restamp(stack_msg, 2000.0 + k, sweep_number=10 + k))
    assert spin_until(rig.executor, lambda: rig.status_for(2004.0) is not None, 60.0)
    status = rig.status_for(2004.0)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and "3 newer stack(s)" in status.message
    assert (values["stacks_dropped"], values["stacks_dropped_total"]) == ("3", "3")
    assert all(rig.status_for(2000.0 + k) is None for k in (1, 2, 3)), "dropped stacks are never fused"
    newest_published = spin_until(
        rig.executor, lambda: any(conversions.stamp_to_seconds(m.header.stamp) == 2004.0 for m in rig.depth), 10.0
    )
    assert newest_published, "the newest stack is fused and published"
    unnumbered = rig.send(restamp(stack_msg, 2005.0, sweep_number=0))
    assert {kv.key: kv.value for kv in unnumbered.values}["stacks_dropped"] == "unknown"


def test_dropped_stacks_are_counted_where_rclpy_has_no_message_info():
    """Humble and Jazzy have no rclpy.subscription.MessageInfo: the test above, run without it.

    rclpy's own modules are imported first (Kilted's executor uses it); the node module after the removal.
    """
    code = (
        "import sys, rclpy.executors, rclpy.node, rclpy.subscription\n"
        "if hasattr(rclpy.subscription, 'MessageInfo'):\n"
        "    del rclpy.subscription.MessageInfo\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]]))\n"
    )
    test = f"{__file__}::test_stacks_that_arrive_while_fusing_are_dropped_counted_and_warned_about"
    result = subprocess.run([sys.executable, "-c", code, test], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


def test_dropped_stack_counter_reads_gaps_per_camera_frame():
    counter = DroppedStackCounter()
    updates = [("camera", 7), ("camera", 8), ("other", 1), ("camera", 12), ("other", 3), ("camera", 2)]
    dropped = [counter.update(frame_id, number) for frame_id, number in updates]
    assert dropped == [0, 0, 0, 3, 1, 0], "first sight and a restarted publisher (number back to 2) drop nothing"
    assert counter.total == 4
    assert counter.update("camera", 0) is None, "an unnumbered stack: unknown"
    assert counter.update("camera", 3) == 0 and counter.total == 4


def test_depth_image_proc_inputs_rgb_and_depth_come_in_pairs_with_equal_headers(ros_context, simulated):
    """rgb/image_rect + rgb/camera_info + depth/image_rect with one header: what depth_image_proc needs."""
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, publish_cloud=False)
    rgb = rig.probe.watch(Image, "rgb/image_rect")
    rgb_info = rig.probe.watch(CameraInfo, "rgb/camera_info")
    for stamp_s in (2500.0, 2500.125, 2501.5):
        assert rig.send(restamp(stack_msg, stamp_s)).level == DiagnosticStatus.OK
    assert spin_until(rig.executor, lambda: len(rgb) >= 3 and len(rgb_info) >= 3 and len(rig.depth) >= 3, 10.0)

    def by_stamp(messages):
        return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in messages}

    depth, images, infos = by_stamp(rig.depth), by_stamp(rgb), by_stamp(rgb_info)
    assert len(depth) == 3 and depth.keys() == images.keys() == infos.keys()
    reference = conversions.image_to_rgb8(stack_msg.frames[stack_msg.reference_index])
    for key, image in images.items():
        assert image.header == depth[key].header == infos[key].header
        assert (image.encoding, image.width, image.height) == ("rgb8", WIDTH, HEIGHT)
        np.testing.assert_array_equal(conversions.image_to_rgb8(image), reference)
        assert list(infos[key].k) == pytest.approx(list(stack_msg.camera_info.k))


def test_cloud_is_built_only_while_someone_subscribes(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, watch_cloud=False)
    built = []
    build_cloud = rig.node._cloud
    rig.node._cloud = lambda *args: built.append(1) or build_cloud(*args)
    assert rig.send(restamp(stack_msg, 2600.0)).level == DiagnosticStatus.OK
    assert built == [], "no subscriber on depth/points: no cloud built"
    clouds = rig.probe.watch(PointCloud2, "depth/points")
    assert spin_until(rig.executor, lambda: rig.node._cloud_pub.get_subscription_count() > 0, 10.0)
    assert rig.send(restamp(stack_msg, 2601.0)).level == DiagnosticStatus.OK
    assert spin_until(rig.executor, lambda: clouds, 10.0) and built == [1]


def test_a_publishing_error_is_reported_and_the_next_stack_is_published(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, publish_cloud=False)
    publish = rig.node._confidence_pub.publish

    def broken(msg):
        raise RuntimeError("publisher's context is invalid")

    rig.node._confidence_pub.publish = broken
    status = rig.send(restamp(stack_msg, 2700.0))
    assert status.level == DiagnosticStatus.ERROR
    assert "depth/confidence" in status.message and "publisher's context is invalid" in status.message
    rig.node._confidence_pub.publish = publish
    assert rig.send(restamp(stack_msg, 2701.0)).level == DiagnosticStatus.OK
    _, confidence, _, _ = rig.outputs_for(2701.0)
    assert confidence


def test_cloud_decimation_keeps_the_grid_organised(ros_context, simulated):
    stack_msg, _ = simulated
    rig = FusionRig(ros_context, cloud_decimation=4)
    assert rig.send(restamp(stack_msg, 2000.0)).level == DiagnosticStatus.OK
    _, _, _, clouds = rig.outputs_for(2000.0)
    assert (clouds[0].height, clouds[0].width) == (HEIGHT // 4, WIDTH // 4)


def _bad_stacks(good):
    """(description, message, words the error must contain) for each kind of bad input."""
    def variant(change):
        msg = copy.deepcopy(good)
        change(msg)
        return msg

    def resize_frame(msg):
        small = conversions.rgb8_to_image(np.zeros((HEIGHT // 2, WIDTH // 2, 3), np.uint8), msg.header)
        msg.frames[1] = small

    def bgr_frame(msg):
        rgb = conversions.image_to_rgb8(msg.frames[1])
        msg.frames[1] = conversions.rgb8_to_image(rgb, msg.header)
        msg.frames[1].encoding = "bgr8"

    def unsupported(msg):
        for frame in msg.frames:
            frame.encoding = "yuv422"

    def empty(msg):
        msg.frames = []
        msg.focus_distances = []

    def one_frame(msg):
        msg.frames = msg.frames[:1]
        msg.focus_distances = msg.focus_distances[:1]

    def set_focus(values):
        def change(msg):
            msg.focus_distances = values
        return change

    distances = list(good.focus_distances)
    return [
        ("empty stack", variant(empty), "empty"),
        ("one frame", variant(one_frame), "at least 2"),
        ("different sizes", variant(resize_frame), "frame 1"),
        ("different encodings", variant(bgr_frame), "frame 1"),
        ("unsupported encoding", variant(unsupported), "unsupported image encoding"),
        ("unsorted focus", variant(set_focus(distances[::-1])), "increasing"),
        ("duplicated focus", variant(set_focus([distances[0]] + distances[:-1])), "duplicated"),
        ("focus <= 0", variant(set_focus([0.0] + distances[1:])), "> 0"),
        ("NaN focus", variant(set_focus([float("nan")] + distances[1:])), "finite"),
        ("count mismatch", variant(set_focus(distances[:-1])), "focus distances"),
        ("missing intrinsics", variant(lambda m: setattr(m.camera_info, "k", [0.0] * 9)), "intrinsics"),
        ("zero focal length", variant(lambda m: m.camera_info.k.__setitem__(0, 0.0)), "intrinsics"),
        ("focal length 1e-30 px", variant(lambda m: m.camera_info.k.__setitem__(0, 1e-30)), "field of view"),
        ("focus at 1e-30 m", variant(set_focus([1e-30] + distances[1:])), "within 0.01..1000 m"),
    ]


def test_bad_input_is_rejected_with_a_clear_error_and_the_next_stack_works(ros_context, simulated):
    stack_msg, truth = simulated
    rig = FusionRig(ros_context)
    for index, (description, bad, words) in enumerate(_bad_stacks(stack_msg)):
        stamp_s = 3000.0 + index
        status = rig.send(restamp(bad, stamp_s))
        assert status.level == DiagnosticStatus.ERROR, description
        assert words in status.message, f"{description}: {status.message}"
        assert not [m for m in rig.depth if math.isclose(conversions.stamp_to_seconds(m.header.stamp), stamp_s)], description
    status = rig.send(restamp(stack_msg, 3999.0))
    assert status.level == DiagnosticStatus.OK, status.message
    depth_msgs, *_ = rig.outputs_for(3999.0)
    depth = conversions.float_image_to_array(depth_msgs[0])
    known = np.isfinite(depth)
    assert np.median(np.abs(depth[known] - truth[known]) / truth[known]) < 0.05


def test_a_stack_without_focus_cue_gives_no_depth_and_a_warning_that_says_why(ros_context, simulated):
    """Every frame identical (a blank wall, a lens that did not move): no invented depth, a WARN naming the cause."""
    stack_msg, _ = simulated
    rig = FusionRig(ros_context)
    flat = restamp(stack_msg, 8100.0)
    for frame in flat.frames:
        frame.data = bytes(flat.frames[0].data)
    status = rig.send(flat)
    assert status.level == DiagnosticStatus.WARN and "no focus cue" in status.message, status.message
    values = {kv.key: kv.value for kv in status.values}
    assert float(values["coverage"]) == 0.0 and float(values["measured_fraction"]) == 0.0
    depth_msgs, confidence_msgs, *_ = rig.outputs_for(8100.0)
    assert np.isnan(conversions.float_image_to_array(depth_msgs[0])).all()
    assert (conversions.float_image_to_array(confidence_msgs[0]) == 0).all()

    status = rig.send(restamp(stack_msg, 8101.0))
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and float(values["coverage"]) > 0.95, "dense by default"
    assert 0.0 < float(values["measured_fraction"]) < 1.0 and "densify_s" in values
