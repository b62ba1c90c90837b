"""Message conversions: the numpy fallbacks, and their agreement with cv_bridge / sensor_msgs_py where installed."""

from __future__ import annotations

import logging
import subprocess
import sys
import types

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hybriddepth_ros.core.stack.camera import CameraIntrinsics  # noqa: E402
from hybriddepth_ros.core.stack.focal_stack import FocalStack  # noqa: E402
from hybriddepth_ros.core.depth.pointcloud import back_project, pack_rgb_float  # noqa: E402
from hybriddepth_ros.msg import FocalStack as FocalStackMsg  # noqa: E402
from hybriddepth_ros.nodes import conversions  # noqa: E402
from hybriddepth_ros.nodes.conversions.image import CvBridgeDecoder  # noqa: E402

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, padding: int = 0) -> Image:
    """An Image with `padding` bytes at the end of each row, as some drivers send."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 255, np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("encoding,pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
])
@pytest.mark.parametrize("padding", [0, 3])
def test_colour_encodings_decode_to_rgb_with_row_padding(encoding, pixels, padding):
    decoded = conversions.image_to_rgb8_numpy(image_msg(np.ascontiguousarray(pixels), encoding, padding))
    np.testing.assert_array_equal(decoded, RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[..., 0]
    decoded = conversions.image_to_rgb8_numpy(image_msg(np.ascontiguousarray(grey), "mono8", 1))
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("change,words", [
    (lambda m: setattr(m, "encoding", "16UC1"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 2), "step"),
    (lambda m: setattr(m, "data", m.data[:10]), "bytes"),
    (lambda m: setattr(m, "width", 0), "empty"),
])
def test_malformed_images_are_refused_with_the_reason(change, words):
    msg = image_msg(RGB, "rgb8")
    change(msg)
    with pytest.raises(conversions.ConversionError, match=words):
        conversions.image_to_rgb8(msg)


def test_float_images_and_camera_info_round_trip():
    depth = RNG.uniform(0.3, 5.0, (4, 6)).astype(np.float32)
    depth[1, 2] = np.nan
    msg = conversions.float_image(depth, Header(frame_id="cam"))
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("32FC1", 24, 0)
    np.testing.assert_array_equal(conversions.float_image_to_array(msg), depth)
    intrinsics = CameraIntrinsics(fx=500.0, fy=510.0, cx=3.2, cy=2.1, width=6, height=4)
    info = conversions.intrinsics_to_camera_info(intrinsics, Header(frame_id="cam"))
    assert conversions.camera_info_to_intrinsics(info) == intrinsics
    assert list(info.p) == [500.0, 0.0, 3.2, 0.0, 0.0, 510.0, 2.1, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(conversions.ConversionError, match="intrinsics"):
        conversions.camera_info_to_intrinsics(CameraInfo(width=6, height=4))


def test_focal_stack_message_round_trip_keeps_frames_focus_stamp_and_flags():
    frames = RNG.integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    intrinsics = CameraIntrinsics(fx=20.0, fy=20.0, cx=4.5, cy=3.5, width=10, height=8)
    stack = FocalStack(frames, np.array([0.4, 0.9, 2.5]), intrinsics, reference_index=1,
                       registered=False, stamp_s=1234.5, frame_id="cam_optical")
    msg = conversions.focal_stack_to_msg(stack, FocalStackMsg, sweep_duration_s=0.25)
    back = conversions.focal_stack_from_msg(msg)
    np.testing.assert_array_equal(back.frames, frames)
    np.testing.assert_allclose(back.focus_distances_m, [0.4, 0.9, 2.5], rtol=1e-6)
    assert (back.reference_index, back.registered, back.frame_id) == (1, False, "cam_optical")
    assert back.stamp_s == pytest.approx(1234.5)
    assert back.intrinsics == intrinsics
    assert msg.sweep_duration == pytest.approx(0.25)
    assert msg.camera_info.header == msg.header == msg.frames[0].header


def _cloud_inputs():
    depth = RNG.uniform(0.5, 3.0, (6, 8)).astype(np.float32)
    depth[2, 3] = np.nan
    intrinsics = CameraIntrinsics(fx=10.0, fy=11.0, cx=3.5, cy=2.5, width=8, height=6)
    colours = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return back_project(depth, intrinsics), colours


def test_numpy_cloud_is_organised_with_packed_rgb():
    points, colours = _cloud_inputs()
    structured = np.empty(points.shape[:2], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    for axis, name in enumerate("xyz"):
        structured[name] = points[..., axis]
    structured["rgb"] = pack_rgb_float(colours)
    cloud = conversions.organised_cloud_numpy(structured, Header(frame_id="cam"))
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step, cloud.is_dense) == (6, 8, 16, 128, False)
    back = conversions.cloud_to_array(cloud)
    np.testing.assert_array_equal(back["z"], points[..., 2])
    packed = back["rgb"].view(np.uint32)
    np.testing.assert_array_equal((packed >> 8) & 255, colours[..., 1])


def test_sensor_msgs_py_builds_the_same_cloud_as_the_fallback():
    point_cloud2 = pytest.importorskip("sensor_msgs_py.point_cloud2")
    points, colours = _cloud_inputs()
    header = Header(frame_id="cam")
    with_library = conversions.organised_cloud(points, colours, header)
    structured = conversions.cloud_to_array(with_library)
    fallback = conversions.organised_cloud_numpy(structured.copy(), header)
    for field in ("height", "width", "point_step", "row_step", "is_dense", "is_bigendian", "fields"):
        assert getattr(with_library, field) == getattr(fallback, field), field
    assert bytes(with_library.data) == bytes(fallback.data)
    read = point_cloud2.read_points_numpy(with_library, field_names=("x", "y", "z"), skip_nans=False)
    np.testing.assert_array_equal(read.reshape(6, 8, 3), points)


def test_cv_bridge_decodes_like_the_fallback():
    pytest.importorskip("cv_bridge")
    for encoding, pixels in (("rgb8", RGB), ("bgr8", RGB[..., ::-1]), ("mono8", RGB[..., 0])):
        msg = image_msg(np.ascontiguousarray(pixels), encoding, 2)
        np.testing.assert_array_equal(conversions.image_to_rgb8(msg), conversions.image_to_rgb8_numpy(msg))


class _FakeBridgeError(Exception):
    pass


def _fake_cv_bridge(monkeypatch, name: str, convert=None, construct_error: Exception | None = None) -> list:
    """A cv_bridge stand-in module `name`; returns the list of frames its imgmsg_to_cv2 was asked for."""
    calls = []

    class CvBridge:
        def __init__(self):
            if construct_error is not None:
                raise construct_error

        def imgmsg_to_cv2(self, msg, desired_encoding):
            calls.append((msg.encoding, desired_encoding))
            return convert(msg)

    module = types.ModuleType(name)
    module.CvBridge, module.CvBridgeError = CvBridge, _FakeBridgeError
    monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_a_working_cv_bridge_decodes_the_frames(monkeypatch):
    calls = _fake_cv_bridge(monkeypatch, "working_bridge", convert=conversions.image_to_rgb8_numpy)
    decoder = CvBridgeDecoder("working_bridge")
    msg = image_msg(np.ascontiguousarray(RGB[..., ::-1]), "bgr8", 2)
    for _ in range(2):
        np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    assert calls == [("bgr8", "rgb8")] * 2 and decoder.active


def test_a_cv_bridge_without_its_compiled_module_falls_back_for_good_and_says_so_once(monkeypatch, caplog):
    missing = ModuleNotFoundError("No module named 'cv_bridge.boost'", name="cv_bridge.boost")
    calls = _fake_cv_bridge(monkeypatch, "broken_bridge", construct_error=missing)
    decoder = CvBridgeDecoder("broken_bridge")
    msg = image_msg(RGB, "rgb8")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    assert not decoder.active and "cv_bridge.boost" in decoder.disabled_reason
    warnings = [r for r in caplog.records if "cv_bridge does not work here" in r.getMessage()]
    assert len(warnings) == 1 and calls == []


@pytest.mark.parametrize("failure", [RuntimeError("numpy ABI mismatch"), AttributeError("_ARRAY_API not found")])
def test_a_cv_bridge_failing_at_the_first_call_falls_back(monkeypatch, failure):
    def convert(msg):
        raise failure

    calls = _fake_cv_bridge(monkeypatch, "failing_bridge", convert=convert)
    decoder = CvBridgeDecoder("failing_bridge")
    msg = image_msg(RGB, "rgb8")
    np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    assert len(calls) == 1 and not decoder.active, "decided on the first failed call, not tried again"


def test_a_frame_cv_bridge_refuses_is_decoded_by_the_fallback_and_the_bridge_stays(monkeypatch):
    refusals = iter([True, False])

    def convert(msg):
        if next(refusals):
            raise _FakeBridgeError("encoding conversion not supported")
        return conversions.image_to_rgb8_numpy(msg)

    calls = _fake_cv_bridge(monkeypatch, "picky_bridge", convert=convert)
    decoder = CvBridgeDecoder("picky_bridge")
    msg = image_msg(RGB, "rgb8")
    np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    np.testing.assert_array_equal(decoder.to_rgb8(msg), RGB)
    assert len(calls) == 2 and decoder.active


def test_without_cv_bridge_the_fallback_runs_quietly(caplog):
    decoder = CvBridgeDecoder("no_such_cv_bridge_module")
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(decoder.to_rgb8(image_msg(RGB, "rgb8")), RGB)
    assert decoder.disabled_reason == "not installed" and not caplog.records


def test_the_core_imports_no_ros():
    """The layering rule: every core module imports without rclpy or ROS messages."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hybriddepth_ros.core as core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'hybriddepth_ros.core.'):\n"
        "    importlib.import_module(info.name)\n"
        "ros = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'rosidl_runtime_py'))\n"
        "print(ros)\n"
        "sys.exit(1 if ros else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
