"""focus_sweep_node end to end over DDS with each built-in capture backend.

Real rclpy nodes in one process: the sweep node, a probe that records what
arrives on `focal_stack`, `simulated/ground_truth_depth` and `/diagnostics`,
and (for the phone stack) a real WebSocket client; for the recorded Pixel 6 Pro
stack also the depth fusion node, which must turn the unregistered stack into
depth.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from support.ros_harness import Probe, spin_until

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from support import PIXEL_STACK
from hybriddepth_ros.core.depth.registry import create_depth_backend  # noqa: E402
from hybriddepth_ros.core.capture.simulated import SimulatedCapture  # noqa: E402
from hybriddepth_ros.core.stack.focal_stack import diopter_sweep  # noqa: E402
from hybriddepth_ros.core.stack.registration import register_stack  # noqa: E402
from hybriddepth_ros.msg import FocalStack as FocalStackMsg  # noqa: E402
from hybriddepth_ros.nodes import conversions  # noqa: E402
from hybriddepth_ros.nodes import depth_fusion_node, focus_sweep_node  # noqa: E402
from hybriddepth_ros.nodes.depth_fusion_node import DepthFusionNode  # noqa: E402
from hybriddepth_ros.nodes.focus_sweep_node import FocusSweepNode  # noqa: E402

websockets_sync = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402

FRAME_ID = "test_sweep_optical_frame"


class SweepRig:
    """A focus_sweep_node with the given parameters and a probe of its outputs, on one executor."""

    def __init__(self, ros_context, **parameters):
        context, self.executor, add = ros_context
        overrides = [Parameter(key, value=value) for key, value in {"frame_id": FRAME_ID, **parameters}.items()]
        self.node = add(FocusSweepNode(context=context, parameter_overrides=overrides))
        self.probe = add(Probe("sweep_probe", context=context))
        self.stacks = self.probe.watch(FocalStackMsg, "focal_stack")
        self.truths = self.probe.watch(Image, "simulated/ground_truth_depth")
        self.diagnostics = self.probe.watch(DiagnosticArray, "/diagnostics", 50)

    def statuses(self, name: str = focus_sweep_node.DIAGNOSTIC_NAME, level=None) -> list[DiagnosticStatus]:
        return [status for array in self.diagnostics for status in array.status
                if status.name == name and (level is None or status.level == level)]

    def spin_until(self, condition, timeout_s: float) -> bool:
        return spin_until(self.executor, condition, timeout_s)


def stamp_s(msg) -> float:
    return conversions.stamp_to_seconds(msg.header.stamp)


def frames_of(msg) -> np.ndarray:
    return np.stack([conversions.image_to_rgb8(frame) for frame in msg.frames])


def assert_same_header(a, b) -> None:
    assert (a.frame_id, a.stamp.sec, a.stamp.nanosec) == (b.frame_id, b.stamp.sec, b.stamp.nanosec)


# --- simulated ---------------------------------------------------------------------------------


def test_simulated_camera_publishes_stacks_and_ground_truth(ros_context):
    width, height, near_m, far_m = 96, 72, 0.4, 4.0
    rig = SweepRig(ros_context, backend="simulated", width=width, height=height, focus_count=5,
                   focus_near_m=near_m, focus_far_m=far_m, rate_hz=5.0,
                   **{"simulated.seed": 2, "simulated.noise_std": 0.0})
    started_s = time.time()
    assert rig.spin_until(
        lambda: len(rig.stacks) >= 2 and len(rig.truths) >= 2 and rig.statuses(level=DiagnosticStatus.OK), 10.0
    ), f"{len(rig.stacks)} stacks, {len(rig.truths)} truths"

    expected_m = diopter_sweep(near_m, far_m, 5)
    # Noise-free, so every stack equals the first one of a fresh camera configured alike.
    reference_camera = SimulatedCapture(focus_distances_m=expected_m.tolist(), width=width, height=height,
                                        seed=2, noise_std=0.0)
    expected = reference_camera.capture_stack()
    for msg in rig.stacks:
        assert msg.header.frame_id == FRAME_ID
        assert len(msg.frames) == 5
        for frame in msg.frames:
            assert (frame.encoding, frame.width, frame.height, frame.step) == ("rgb8", width, height, 3 * width)
            assert_same_header(frame.header, msg.header)
        np.testing.assert_array_equal(frames_of(msg), expected.frames)
        np.testing.assert_allclose(msg.focus_distances, expected_m, rtol=1e-6)
        assert np.all(np.diff(msg.focus_distances) > 0)
        info = msg.camera_info
        assert_same_header(info.header, msg.header)
        assert (info.width, info.height) == (width, height)
        intrinsics = expected.intrinsics
        np.testing.assert_allclose(
            info.k, [intrinsics.fx, 0, intrinsics.cx, 0, intrinsics.fy, intrinsics.cy, 0, 0, 1], rtol=1e-12)
        assert 0 < info.k[2] < width and 0 < info.k[5] < height
        assert msg.reference_index == 0 and msg.registered
        assert started_s - 1.0 < stamp_s(msg) < time.time() + 1.0
    stamps = [stamp_s(msg) for msg in rig.stacks]
    assert all(later > earlier for earlier, later in zip(stamps, stamps[1:])), stamps

    truth_by_stamp = {stamp_s(truth): truth for truth in rig.truths}
    matched = [msg for msg in rig.stacks if stamp_s(msg) in truth_by_stamp]
    assert matched, "no ground-truth depth carries a stack's stamp"
    truth = truth_by_stamp[stamp_s(matched[0])]
    assert_same_header(truth.header, matched[0].header)
    np.testing.assert_array_equal(conversions.float_image_to_array(truth), reference_camera.ground_truth_depth_m)
    ok = rig.statuses(level=DiagnosticStatus.OK)
    assert ok and ok[0].message == "stack published"
    assert {kv.key: kv.value for kv in ok[0].values}["frames"] == "5"


def test_explicit_focus_distances_override_near_far_and_count(ros_context):
    rig = SweepRig(ros_context, backend="simulated", width=32, height=24, rate_hz=10.0,
                   focus_distances_m=[0.5, 1.0, 2.5], focus_count=7, focus_near_m=0.2, focus_far_m=9.0)
    assert rig.node.focus_distances_m == [0.5, 1.0, 2.5]
    assert rig.spin_until(lambda: rig.stacks, 10.0)
    msg = rig.stacks[0]
    assert len(msg.frames) == 3
    np.testing.assert_allclose(msg.focus_distances, [0.5, 1.0, 2.5], rtol=1e-6)


@pytest.mark.parametrize("distances_m,words", [
    ([1.0, 0.5, 2.0], "strictly increasing"),
    ([0.5, 0.5, 2.0], "duplicated"),
    ([0.0, 1.0], ">= 0.01"),
])
def test_bad_explicit_focus_distances_refused(ros_context, distances_m, words):
    context, _, _ = ros_context
    overrides = [Parameter("backend", value="simulated"), Parameter("focus_distances_m", value=distances_m)]
    with pytest.raises(ValueError, match="focus_distances_m") as refused:
        FocusSweepNode(context=context, parameter_overrides=overrides)
    assert words in str(refused.value)


# --- directory ---------------------------------------------------------------------------------


def write_stack_folder(folder: Path, focus_by_name: dict[str, float], size_px=(64, 48),
                       seed=0) -> dict[float, np.ndarray]:
    """PNG files named `<name>_<focus>.png` with random RGB content; returns focus -> RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, focus_m in focus_by_name.items():
        rgb = rng.integers(0, 256, (size_px[1], size_px[0], 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"{name}_{focus_m}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        written[focus_m] = rgb
    return written


def block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgb.shape[0] // factor, rgb.shape[1] // factor
    return rgb.reshape(h, factor, w, factor, 3).astype(np.float64).mean(axis=(1, 3))


def test_directory_stack_is_published_sorted_and_resized(ros_context, tmp_path):
    written = write_stack_folder(tmp_path / "stack", {"img_1": 0.5, "img_2": 2.0, "img_3": 1.0})
    rig = SweepRig(ros_context, backend="directory", width=32, height=24, rate_hz=10.0,
                   **{"directory.path": str(tmp_path / "stack")})
    assert rig.spin_until(lambda: len(rig.stacks) >= 2, 10.0), [s.message for s in rig.statuses()]
    msg = rig.stacks[0]
    np.testing.assert_allclose(msg.focus_distances, [0.5, 1.0, 2.0], rtol=1e-6)
    assert msg.reference_index == 0 and not msg.registered and msg.header.frame_id == FRAME_ID
    frames = frames_of(msg)
    assert frames.shape == (3, 24, 32, 3)
    for frame, focus_m in zip(frames, (0.5, 1.0, 2.0)):  # exact 2x downscale: 2x2 block means
        np.testing.assert_allclose(frame, block_mean(written[focus_m], 2), atol=1.0)
    fx_native = (64 / 2) / math.tan(math.radians(35.0))  # 70 deg default field of view
    info = msg.camera_info
    assert (info.width, info.height) == (32, 24)
    np.testing.assert_allclose([info.k[0], info.k[4], info.k[2], info.k[5]],
                               [fx_native / 2, fx_native / 2, 15.5, 11.5], rtol=1e-9)
    assert stamp_s(rig.stacks[1]) > stamp_s(msg), "a looping replay restamps every stack"


@pytest.mark.skipif(not PIXEL_STACK.is_dir(), reason="../shared/data/pixel6pro_stack is not present")
def test_phone_recording_replays_into_fusion_with_registration_borders_unknown(ros_context):
    rig = SweepRig(ros_context, backend="directory", width=320, height=240, rate_hz=2.0,
                   **{"directory.path": str(PIXEL_STACK)})
    context, _, add = ros_context
    # Threshold 0 publishes every in-range pixel, so only the registration borders (and
    # focus-measure failures) are NaN; the default 0.5 keeps only ~0.5 % of this stack.
    fusion_parameters = [Parameter("device", value="cpu"), Parameter("confidence_threshold", value=0.0)]
    add(DepthFusionNode(context=context, parameter_overrides=fusion_parameters))
    depth_images = rig.probe.watch(Image, "depth/image_rect")

    def fused():
        """(fusion status, depth image, stack) of one stack the probe also received, or None."""
        stacks = {round(stamp_s(m), 6): m for m in rig.stacks}
        depths = {round(stamp_s(m), 6): m for m in depth_images}
        for status in rig.statuses(depth_fusion_node.DIAGNOSTIC_NAME):
            stamp = round(float({kv.key: kv.value for kv in status.values}["stamp"]), 6)
            if status.level != DiagnosticStatus.OK or (stamp in stacks and stamp in depths):
                return status, depths.get(stamp), stacks.get(stamp)
        return None

    assert rig.spin_until(lambda: fused() is not None, 30.0), [s.message for s in rig.statuses()]
    status, depth_msg, stack_msg = fused()
    assert status.level == DiagnosticStatus.OK, status.message
    assert {kv.key for kv in status.values} >= {"registration_s", "coverage"}
    np.testing.assert_allclose(stack_msg.focus_distances, [0.5, 0.65, 0.8, 0.95, 1.3], rtol=1e-6)
    assert len(stack_msg.frames) == 5 and not stack_msg.registered
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", 320, 240)
    assert_same_header(depth_msg.header, stack_msg.header)
    depth_m = conversions.float_image_to_array(depth_msg)
    known = np.isfinite(depth_m)
    assert known.mean() > 0.3, f"only {known.mean():.4f} of the pixels have a depth"
    assert 0.5 <= np.median(depth_m[known]) <= 1.3, "depth of a scene focused over 0.5-1.3 m"

    # Registration and the backend are deterministic: redo them on the received stack. Where
    # the backend has an in-range depth the node publishes it, except outside the valid mask.
    registered = register_stack(conversions.focal_stack_from_msg(stack_msg)).stack
    valid_mask = registered.valid_mask
    assert 0.5 < valid_mask.mean() < 1.0, "a hand-held stack leaves uncovered borders"
    raw_depth_m = create_depth_backend("focus_measure", device="cpu").estimate(registered).depth_m
    in_range = np.isfinite(raw_depth_m) & (raw_depth_m >= 0.1) & (raw_depth_m <= 10.0)
    # The weight-free backend leaves registration borders NaN itself; the node must too.
    assert np.any(~valid_mask) and not np.any(known & ~valid_mask), "registration borders are unknown"
    np.testing.assert_array_equal(known, in_range & valid_mask)
    np.testing.assert_allclose(depth_m[known], raw_depth_m[known], rtol=1e-6)


def truncated_jpeg() -> bytes:
    """A 64x48 textured JPEG cut to 60 % (OpenCV 4 decodes it with grey rows)."""
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(5).integers(0, 256, (48, 64, 3), np.uint8))
    assert ok
    return jpeg.tobytes()[: int(jpeg.size * 0.6)]


@pytest.mark.parametrize("bad_file,content,words", [
    ("notes.png", b"not an image", "no focus distance in the name"),
    ("img_3_2.0.png", b"not an image", "unreadable image file"),
    ("img_3_2.0.jpg", truncated_jpeg(), "unreadable image file"),
])
def test_broken_directory_is_an_error_diagnostic_not_a_crash(ros_context, tmp_path, bad_file, content, words):
    folder = tmp_path / "stack"
    write_stack_folder(folder, {"img_1": 0.5, "img_2": 1.0})
    (folder / bad_file).write_bytes(content)
    rig = SweepRig(ros_context, backend="directory", width=32, height=24, rate_hz=20.0,
                   **{"directory.path": str(folder)})
    # Spinning re-raises any exception from the node's callbacks: two failed sweeps in a row
    # prove the node survives and keeps trying.
    assert rig.spin_until(lambda: len(rig.statuses(level=DiagnosticStatus.ERROR)) >= 2, 10.0)
    for status in rig.statuses(level=DiagnosticStatus.ERROR):
        assert status.message.startswith("sweep failed: ")
        assert words in status.message and bad_file in status.message, status.message
    assert rig.stacks == [] and rig.node.stacks_published == 0
    assert not rig.statuses(level=DiagnosticStatus.OK)


# --- phone -------------------------------------------------------------------------------------

PHONE_SIZE_PX = (64, 48)
PHONE_INTRINSICS_PX = {"fx": 52.0, "fy": 53.0, "cx": 31.0, "cy": 24.5}


def phone_frames(diopters: list[float]) -> list[np.ndarray]:
    """Smooth, clearly different RGB images (JPEG keeps them within a few levels)."""
    width, height = PHONE_SIZE_PX
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for i, _ in enumerate(diopters):
        rgb = np.stack([40 + 60 * i + x, 200 - 50 * i + 0 * x, 30 + 2 * y + 40 * i], axis=-1)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return frames


def phone_message(token: str, index: int, count: int, diopters: float, rgb: np.ndarray) -> str:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return json.dumps({"token": token, "stack_id": "sweep-1", "index": index, "count": count,
                       "focus_diopters": diopters, "jpeg_base64": base64.b64encode(jpeg.tobytes()).decode(),
                       **PHONE_INTRINSICS_PX})


def test_phone_stack_arrives_over_websocket_and_dds(ros_context):
    rig = SweepRig(ros_context, backend="phone", rate_hz=20.0, **{"phone.port": 0, "phone.token": "secret"})
    diopters = [1.0, 4.0, 2.0]  # capture order: far, near, middle
    frames = phone_frames(diopters)
    port = rig.node.backend.bridge.port
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5.0) as client:
        replies = []
        for index, (d, rgb) in enumerate(zip(diopters, frames)):
            client.send(phone_message("secret", index, len(diopters), d, rgb))
            replies.append(json.loads(client.recv(timeout=5.0)))
    assert [r["type"] for r in replies] == ["ack", "ack", "stack_complete"], replies
    assert rig.spin_until(lambda: rig.stacks, 10.0), [s.message for s in rig.statuses()]
    msg = rig.stacks[0]
    np.testing.assert_allclose(msg.focus_distances, [0.25, 0.5, 1.0], rtol=1e-6)
    received = frames_of(msg)
    assert received.shape == (3, PHONE_SIZE_PX[1], PHONE_SIZE_PX[0], 3)
    for frame, sent_index in zip(received, (1, 2, 0)):  # near to far
        error = np.abs(frame.astype(np.int16) - frames[sent_index])
        assert error.mean() < 2.0 and error.max() < 20, (sent_index, error.mean(), error.max())
    info = msg.camera_info
    assert (info.width, info.height) == PHONE_SIZE_PX
    p = PHONE_INTRINSICS_PX
    np.testing.assert_allclose(info.k, [p["fx"], 0, p["cx"], 0, p["fy"], p["cy"], 0, 0, 1])
    assert msg.header.frame_id == FRAME_ID and msg.reference_index == 0 and not msg.registered
    assert rig.node.stacks_published == 1


def test_phone_with_wrong_token_is_refused_and_nothing_published(ros_context):
    rig = SweepRig(ros_context, backend="phone", rate_hz=20.0, **{"phone.port": 0, "phone.token": "secret"})
    diopters = [1.0, 2.0]
    port = rig.node.backend.bridge.port
    for index, (d, rgb) in enumerate(zip(diopters, phone_frames(diopters))):
        with websockets_sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5.0) as client:
            client.send(phone_message("not-the-secret", index, len(diopters), d, rgb))
            reply = json.loads(client.recv(timeout=5.0))
            assert (reply["type"], reply["code"]) == ("error", "unauthorized"), reply
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=5.0)
            assert closed.value.rcvd.code == 1008
    rig.spin_until(lambda: False, 1.0)
    assert rig.stacks == [] and rig.node.stacks_published == 0


def test_phone_refusals_reach_diagnostics_and_configured_intrinsics_apply(ros_context):
    """Refused messages are a WARN status with counters; frames without intrinsics get camera.* scaled."""
    rig = SweepRig(ros_context, backend="phone", rate_hz=20.0, width=128, height=96,
                   **{"phone.port": 0, "phone.token": "secret", "camera.fx": 100.0, "camera.cx": 63.5,
                      "camera.cy": 47.5})
    port = rig.node.backend.bridge.port
    diopters = [1.0, 2.0]
    with websockets_sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5.0) as client:
        for index, (d, rgb) in enumerate(zip(diopters, phone_frames(diopters))):
            message = json.loads(phone_message("secret", index, 2, d, rgb))
            for field in PHONE_INTRINSICS_PX:
                del message[field]
            client.send(json.dumps({**message, "focus_diopters": -1.0}))
            assert json.loads(client.recv(timeout=5.0))["code"] == "bad_field"
            client.send(json.dumps(message))
            assert json.loads(client.recv(timeout=5.0))["type"] in ("ack", "stack_complete")

    def warned():
        return [status for status in rig.statuses(level=DiagnosticStatus.WARN) if "bad_field x" in status.message]

    assert rig.spin_until(lambda: rig.stacks and warned(), 10.0), [s.message for s in rig.statuses()]
    values = {kv.key: kv.value for status in warned() for kv in status.values}
    assert values["phone.refused.bad_field"] in ("1", "2") and values["phone.url"].startswith("ws://127.0.0.1:")
    counts = [int(status.message.split("bad_field x")[1].split(")")[0]) for status in warned()]
    assert sum(counts) == 2, "each refusal is reported once"
    info = rig.stacks[0].camera_info
    assert (info.width, info.height) == PHONE_SIZE_PX
    np.testing.assert_allclose([info.k[0], info.k[4], info.k[2], info.k[5]], [50.0, 50.0, 31.5, 23.5])


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("parameters,words", [
    ({"backend": "v4l2"}, "v4l2.calibration_file"),
    ({"backend": "phone"}, "phone.token"),
    ({"backend": "kinect"}, "backend must be one of"),
    ({"backend": "directory"}, "directory.path"),
    ({"backend": "simulated", "rate_hz": 0.0}, "rate_hz"),
])
def test_bad_configuration_refused_at_construction(ros_context, parameters, words):
    context, _, _ = ros_context
    overrides = [Parameter(key, value=value) for key, value in parameters.items()]
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        FocusSweepNode(context=context, parameter_overrides=overrides)
