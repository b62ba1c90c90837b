"""V4L2Capture against OpenCV reading a real MJPG video whose frames encode their own index."""

from __future__ import annotations

import glob
import os
import time

import cv2
import numpy as np
import pytest

from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.capture.base import CaptureError
from hybriddepth_ros.core.capture.v4l2 import V4L2Capture

WIDTH_PX, HEIGHT_PX = 64, 48
NUM_VIDEO_FRAMES = 40
INDEX_STEP = 6  # grey level per frame index in the top half; survives MJPG compression
FOCUS_DISTANCES_M = [0.3, 0.5, 1.0]
CALIBRATION_INTRINSICS = CameraIntrinsics(
    fx=256.0, fy=256.0, cx=127.5, cy=95.5, width=256, height=192
)


class InverseDistanceLens:
    """Stand-in for FocusCalibration: lens units = 100 / distance."""

    def units_for_distance(self, distance_m: float) -> float:
        return round(100.0 / distance_m)


class RecordingCamera:
    """A cv2.VideoCapture on a video file that logs every call and can vanish after some reads.

    Exposure/white-balance properties keep whatever was set (a file has none), so
    the lock/restore round-trip is visible; `get` of them starts from `AUTO_STATE`.
    """

    AUTO_STATE = {
        cv2.CAP_PROP_AUTO_EXPOSURE: 3.0,
        cv2.CAP_PROP_EXPOSURE: 157.0,
        cv2.CAP_PROP_AUTO_WB: 1.0,
        cv2.CAP_PROP_WB_TEMPERATURE: 4600.0,
    }

    def __init__(self, path: str, calls: list, vanish_after_reads: int | None = None):
        self._video = cv2.VideoCapture(path)
        self._calls = calls
        self._properties = dict(self.AUTO_STATE)
        self._frames_left = vanish_after_reads
        self.next_frame_index = 0

    def _vanished(self) -> bool:
        return self._frames_left is not None and self._frames_left <= 0

    def isOpened(self) -> bool:
        return self._video.isOpened() and not self._vanished()

    def set(self, prop: int, value: float) -> bool:
        self._calls.append(("set", prop, value))
        if self._vanished():
            return False
        self._properties[prop] = value
        return True

    def get(self, prop: int) -> float:
        self._calls.append(("get", prop))
        return self._properties.get(prop, -1.0)

    def _consume(self) -> bool:
        if self._vanished():
            return False
        if self._frames_left is not None:
            self._frames_left -= 1
        self.next_frame_index += 1
        return True

    def grab(self) -> bool:
        index = self.next_frame_index
        ok = self._consume() and self._video.grab()
        self._calls.append(("grab", index if ok else None))
        return ok

    def read(self):
        index = self.next_frame_index
        ok = self._consume()
        ok, frame = self._video.read() if ok else (False, None)
        self._calls.append(("read", index if ok else None))
        return ok, frame

    def release(self) -> None:
        self._calls.append(("release",))
        self._video.release()


@pytest.fixture(scope="module")
def video_path(tmp_path_factory) -> str:
    """MJPG video: frame i has grey 6*i in its top half and pure blue (BGR) in its bottom half."""
    path = str(tmp_path_factory.mktemp("v4l2") / "indexed.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (WIDTH_PX, HEIGHT_PX))
    assert writer.isOpened()
    for index in range(NUM_VIDEO_FRAMES):
        frame = np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.uint8)
        frame[: HEIGHT_PX // 2] = INDEX_STEP * index
        frame[HEIGHT_PX // 2 :, :, 0] = 255
        writer.write(frame)
    writer.release()
    return path


def frame_index(rgb_frame: np.ndarray) -> int:
    return int(round(rgb_frame[: HEIGHT_PX // 4].mean() / INDEX_STEP))


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def make_capture(camera_factory, settle_frames=2, **options) -> V4L2Capture:
    return V4L2Capture(
        device="/dev/video-test",
        focus_distances_m=FOCUS_DISTANCES_M,
        calibration=InverseDistanceLens(),
        intrinsics=CALIBRATION_INTRINSICS,
        settle_frames=settle_frames,
        open_capture=camera_factory,
        **options,
    )


def test_sweep_sets_focus_discards_settle_frames_and_keeps_the_next(video_path):
    calls: list = []
    opened_devices = []

    def open_camera(device):
        opened_devices.append(device)
        return RecordingCamera(video_path, calls)

    capture = make_capture(open_camera, settle_frames=2)
    stack = capture.capture_stack()

    assert opened_devices == ["/dev/video-test"]
    stack.validate()
    np.testing.assert_array_equal(stack.focus_distances_m, FOCUS_DISTANCES_M)
    assert stack.frames.shape == (3, HEIGHT_PX, WIDTH_PX, 3)
    # Each kept frame is the third after its focus change: indices 2, 5, 8.
    assert [frame_index(f) for f in stack.frames] == [2, 5, 8]
    assert stack.reference_index == 0 and stack.registered is False
    # BGR -> RGB: the blue bottom half is in channel 2.
    bottom = stack.frames[0, HEIGHT_PX * 3 // 4 :]
    assert bottom[..., 2].mean() > 240 and bottom[..., 0].mean() < 15
    assert stack.intrinsics == CALIBRATION_INTRINSICS.scaled(WIDTH_PX, HEIGHT_PX)
    assert stack.intrinsics.fx == pytest.approx(64.0)
    assert abs(stack.stamp_s - time.time()) < 5.0

    sweep_calls = [c for c in calls if c[0] in ("grab", "read") or c[1] == cv2.CAP_PROP_FOCUS]
    expected = []
    for units, first_index in ((333, 0), (200, 3), (100, 6)):
        expected += [
            ("set", cv2.CAP_PROP_FOCUS, units),
            ("grab", first_index),
            ("grab", first_index + 1),
            ("read", first_index + 2),
        ]
    assert sweep_calls == expected
    assert calls[0] == ("set", cv2.CAP_PROP_AUTOFOCUS, 0)

    second = capture.capture_stack()
    assert [frame_index(f) for f in second.frames] == [11, 14, 17]
    assert capture.status.stacks_captured == 2 and capture.status.connected


def test_exposure_and_white_balance_locked_at_current_values_then_restored(video_path):
    calls: list = []
    camera = None

    def open_camera(device):
        nonlocal camera
        camera = RecordingCamera(video_path, calls)
        return camera

    capture = make_capture(open_camera, settle_frames=0)
    capture.capture_stack()

    first_focus = calls.index(("set", cv2.CAP_PROP_FOCUS, 333))
    last_read = max(i for i, c in enumerate(calls) if c[0] == "read")
    lock = [c for c in calls[:first_focus] if c[0] == "set" and c[1] != cv2.CAP_PROP_AUTOFOCUS]
    assert lock == [
        ("set", cv2.CAP_PROP_AUTO_EXPOSURE, 1.0),
        ("set", cv2.CAP_PROP_EXPOSURE, 157.0),
        ("set", cv2.CAP_PROP_AUTO_WB, 0.0),
        ("set", cv2.CAP_PROP_WB_TEMPERATURE, 4600.0),
    ]
    for prop in RecordingCamera.AUTO_STATE:
        assert ("get", prop) in calls[:first_focus]
    restore = calls[last_read + 1 :]
    assert restore == [
        ("set", cv2.CAP_PROP_AUTO_EXPOSURE, 3.0),
        ("set", cv2.CAP_PROP_AUTO_WB, 1.0),
    ]
    assert camera._properties[cv2.CAP_PROP_AUTO_EXPOSURE] == 3.0
    assert camera._properties[cv2.CAP_PROP_AUTO_WB] == 1.0


def test_settle_time_waits_after_each_focus_change(video_path):
    capture = make_capture(lambda d: RecordingCamera(video_path, []), settle_frames=0, settle_time_s=0.05)
    start_s = time.monotonic()
    stack = capture.capture_stack()
    assert time.monotonic() - start_s >= 3 * 0.05
    assert [frame_index(f) for f in stack.frames] == [0, 1, 2]


def test_camera_vanishing_mid_sweep_then_backoff_then_resume(video_path):
    calls: list = []
    clock = FakeClock()
    state = {"present": True, "vanish_after_reads": 4}

    def open_camera(device):
        path = video_path if state["present"] else video_path + ".unplugged"
        return RecordingCamera(path, calls, vanish_after_reads=state["vanish_after_reads"])

    capture = make_capture(
        open_camera,
        settle_frames=2,
        clock=clock,
        reconnect_initial_delay_s=1.0,
        reconnect_max_delay_s=3.0,
    )
    # Vanishes on the 5th frame: while settling for the second focus distance.
    with pytest.raises(CaptureError, match="stopped delivering frames"):
        capture.capture_stack()
    status = capture.status
    assert not status.connected
    assert "stopped delivering frames" in status.last_error
    assert status.retry_delay_s == 1.0 and status.reconnect_attempts == 0
    assert ("release",) in calls
    # The failure came while settling for the second focus distance; the auto
    # modes were still put back (best effort) before the camera was released.
    assert ("grab", None) in calls and ("set", cv2.CAP_PROP_FOCUS, 100) not in calls
    assert calls[-3:] == [
        ("set", cv2.CAP_PROP_AUTO_EXPOSURE, 3.0),
        ("set", cv2.CAP_PROP_AUTO_WB, 1.0),
        ("release",),
    ]

    state["present"] = False
    opens_before = len([c for c in calls if c == ("set", cv2.CAP_PROP_AUTOFOCUS, 0)])
    clock.now_s += 0.5
    assert capture.capture_stack() is None  # still inside the backoff: no open attempt

    expected_delays_s = [2.0, 3.0, 3.0]  # doubling, capped at reconnect_max_delay_s
    for attempt, delay_s in enumerate(expected_delays_s, start=1):
        clock.now_s += capture.status.retry_delay_s
        with pytest.raises(CaptureError, match="cannot open camera"):
            capture.capture_stack()
        assert capture.status.reconnect_attempts == attempt
        assert capture.status.retry_delay_s == delay_s
        clock.now_s += delay_s - 0.01
        assert capture.capture_stack() is None
        clock.now_s -= delay_s - 0.01

    state.update(present=True, vanish_after_reads=None)
    clock.now_s += capture.status.retry_delay_s
    stack = capture.capture_stack()
    assert [frame_index(f) for f in stack.frames] == [2, 5, 8]  # a fresh device stream
    status = capture.status
    assert status.connected and status.reconnect_attempts == 0 and status.retry_delay_s == 0.0
    assert len([c for c in calls if c == ("set", cv2.CAP_PROP_AUTOFOCUS, 0)]) == opens_before + 1
    assert capture.capture_stack() is not None


def test_first_open_failure_raises_and_backs_off(tmp_path):
    clock = FakeClock()
    capture = make_capture(
        lambda d: cv2.VideoCapture(str(tmp_path / "missing.avi")), clock=clock
    )
    with pytest.raises(CaptureError, match="cannot open camera"):
        capture.capture_stack()
    assert capture.status.reconnect_attempts == 1
    assert capture.status.retry_delay_s == 0.5
    assert capture.capture_stack() is None


def test_refused_focus_is_a_capture_error(video_path):
    class FixedFocusCamera(RecordingCamera):
        def set(self, prop, value):
            return prop != cv2.CAP_PROP_FOCUS and super().set(prop, value)

    capture = make_capture(lambda d: FixedFocusCamera(video_path, []), clock=FakeClock())
    with pytest.raises(CaptureError, match="refused focus_absolute=333"):
        capture.capture_stack()
    assert not capture.status.connected


def test_driver_exception_mid_sweep_is_a_lost_camera(video_path):
    class CrashingCamera(RecordingCamera):
        def read(self):
            raise cv2.error("VIDIOC_DQBUF: No such device")

    clock = FakeClock()
    capture = make_capture(lambda d: CrashingCamera(video_path, []), clock=clock)
    with pytest.raises(CaptureError, match="No such device"):
        capture.capture_stack()
    assert not capture.status.connected and "No such device" in capture.status.last_error
    assert capture.capture_stack() is None


def test_rejects_unsorted_sweep():
    with pytest.raises(ValueError, match="strictly increasing"):
        V4L2Capture(
            device=0,
            focus_distances_m=[1.0, 0.5],
            calibration=InverseDistanceLens(),
            intrinsics=CALIBRATION_INTRINSICS,
        )


VIDEO_DEVICES = sorted(glob.glob("/dev/video*"))


@pytest.mark.skipif(not VIDEO_DEVICES, reason="no /dev/video* camera on this machine")
def test_real_v4l2_camera_sweep():
    device = os.environ.get("HYBRIDDEPTH_TEST_VIDEO_DEVICE", VIDEO_DEVICES[0])
    capture = V4L2Capture(
        device=device,
        focus_distances_m=FOCUS_DISTANCES_M,
        calibration=InverseDistanceLens(),
        intrinsics=CALIBRATION_INTRINSICS,
        settle_frames=3,
    )
    try:
        stack = capture.capture_stack()
    except CaptureError as exc:
        if "refused focus_absolute" in str(exc):
            pytest.skip(f"{device} has no focus_absolute control: {exc}")
        raise
    finally:
        capture.close()
    stack.validate()
    assert stack.num_frames == len(FOCUS_DISTANCES_M)
