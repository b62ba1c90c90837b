"""Focus sweeps on a UVC/V4L2 camera with a motorised lens, through OpenCV.

The lens is stepped through the sweep with `focus_absolute` (CAP_PROP_FOCUS) in
the camera's own lens units, looked up from a focus calibration table. Exposure
and white balance are frozen for the sweep so that only focus changes between
frames (a focal stack whose brightness drifts looks like a focus change to the
focus measure). The camera may be unplugged at any time: the backend reports it,
then reopens it with exponential backoff without ever blocking its caller for
longer than one attempt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from ..stack.camera import CameraIntrinsics
from ..stack.focal_stack import DEFAULT_FRAME_ID, FocalStack, validate_focus_distances
from .base import CaptureBackend, CaptureError

_LOG = logging.getLogger(__name__)


class VideoCaptureLike(Protocol):
    """The subset of cv2.VideoCapture the sweep uses."""

    def isOpened(self) -> bool: ...

    def set(self, prop: int, value: float) -> bool: ...

    def get(self, prop: int) -> float: ...

    def grab(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class LensCalibration(Protocol):
    """Maps a focus distance to the lens units of `focus_absolute` (FocusCalibration has this)."""

    def units_for_distance(self, distance_m: float) -> float: ...


def open_v4l2_capture(device: str | int) -> cv2.VideoCapture:
    """Open `device` (a /dev/video* path or an index) with OpenCV's V4L2 backend."""
    return cv2.VideoCapture(device, cv2.CAP_V4L2)


@dataclass(frozen=True)
class CaptureStatus:
    """What a diagnostic needs to say about the camera: is it there, and if not, why and since when."""

    connected: bool
    last_error: str
    reconnect_attempts: int
    """Failed reopen attempts since the camera was lost; 0 while connected."""
    retry_delay_s: float
    """Backoff before the next reopen attempt; 0 while connected."""
    stacks_captured: int


# Exposure and white balance controls: (auto switch, manual value).
_EXPOSURE_CONTROLS = (cv2.CAP_PROP_AUTO_EXPOSURE, cv2.CAP_PROP_EXPOSURE)
_WHITE_BALANCE_CONTROLS = (cv2.CAP_PROP_AUTO_WB, cv2.CAP_PROP_WB_TEMPERATURE)


class V4L2Capture(CaptureBackend):
    """Focus sweeps on a V4L2 camera: one FocalStack per `capture_stack()`.

    The camera is opened on the first `capture_stack()` call. Per focus distance
    (ascending): set focus_absolute, wait `settle_time_s`, discard
    `settle_frames` frames (V4L2 queues frames exposed while the lens was still
    moving), keep the next one. `intrinsics` are for the calibration resolution
    and are scaled to the frames' size.

    `manual_exposure_mode` is the CAP_PROP_AUTO_EXPOSURE value that means manual
    for the backend: 1 for V4L2 (V4L2_EXPOSURE_MANUAL). `open_capture` builds the
    capture object from `device` (tests inject a recording file reader); `clock`
    is the monotonic clock of the reconnect backoff.
    """

    name = "v4l2"

    def __init__(
        self,
        device: str | int,
        focus_distances_m: Sequence[float],
        calibration: LensCalibration,
        intrinsics: CameraIntrinsics,
        settle_frames: int = 3,
        settle_time_s: float = 0.0,
        frame_size_px: tuple[int, int] | None = None,
        frame_id: str = DEFAULT_FRAME_ID,
        manual_exposure_mode: float = 1.0,
        reconnect_initial_delay_s: float = 0.5,
        reconnect_max_delay_s: float = 30.0,
        open_capture: Callable[[str | int], VideoCaptureLike] = open_v4l2_capture,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        distances_m = validate_focus_distances(focus_distances_m, expected_count=None)
        if distances_m.size < 2:
            raise ValueError(f"a sweep needs at least 2 focus distances, got {distances_m.size}")
        if settle_frames < 0 or settle_time_s < 0:
            raise ValueError(
                f"settle_frames and settle_time_s must be >= 0 (got {settle_frames}, {settle_time_s})"
            )
        if not 0 < reconnect_initial_delay_s <= reconnect_max_delay_s:
            raise ValueError(
                "need 0 < reconnect_initial_delay_s <= reconnect_max_delay_s "
                f"(got {reconnect_initial_delay_s}, {reconnect_max_delay_s})"
            )
        intrinsics.validate()
        self.device = device
        self.focus_distances_m = distances_m
        # Looked up once so that a sweep outside the calibrated range fails at start-up.
        self.lens_units = [float(calibration.units_for_distance(float(d))) for d in distances_m]
        self.intrinsics = intrinsics
        self.settle_frames = int(settle_frames)
        self.settle_time_s = float(settle_time_s)
        self.frame_size_px = frame_size_px
        self.frame_id = frame_id
        self.manual_exposure_mode = float(manual_exposure_mode)
        self.reconnect_initial_delay_s = float(reconnect_initial_delay_s)
        self.reconnect_max_delay_s = float(reconnect_max_delay_s)
        self._open_capture = open_capture
        self._clock = clock
        self._capture: VideoCaptureLike | None = None
        self._last_error = ""
        self._reconnect_attempts = 0
        self._retry_delay_s = 0.0
        self._next_attempt_at_s = float("-inf")
        self._stacks_captured = 0

    @property
    def status(self) -> CaptureStatus:
        return CaptureStatus(
            connected=self._capture is not None,
            last_error=self._last_error,
            reconnect_attempts=self._reconnect_attempts,
            retry_delay_s=self._retry_delay_s,
            stacks_captured=self._stacks_captured,
        )

    def capture_stack(self) -> FocalStack | None:
        """Sweep once; None while waiting out a reconnect backoff; CaptureError when the camera fails."""
        if self._capture is None:
            if self._clock() < self._next_attempt_at_s:
                return None
            self._open()
        try:
            stack = self._sweep(self._capture)
        except CaptureError as exc:
            self._lose_camera(str(exc))
            raise
        except cv2.error as exc:  # a driver failing mid-sweep counts as the camera being lost
            message = f"camera {self.device!r} failed mid-sweep: {exc}"
            self._lose_camera(message)
            raise CaptureError(message) from exc
        self._stacks_captured += 1
        return stack

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _open(self) -> None:
        """One open attempt; on failure, schedule the next one further away and raise."""
        capture = None
        try:
            capture = self._open_capture(self.device)
            if not capture.isOpened():
                raise CaptureError(f"cannot open camera {self.device!r}")
        except CaptureError as exc:
            raise self._reopen_failed(capture, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - any driver failure means "not there yet"
            raise self._reopen_failed(capture, f"cannot open camera {self.device!r}: {exc}") from exc
        if self.frame_size_px is not None:
            width_px, height_px = self.frame_size_px
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width_px)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height_px)
        if not capture.set(cv2.CAP_PROP_AUTOFOCUS, 0):
            _LOG.warning("camera %r did not accept autofocus off", self.device)
        if self._reconnect_attempts:
            _LOG.info(
                "camera %r is back after %d failed reopen attempts",
                self.device,
                self._reconnect_attempts,
            )
        self._capture = capture
        self._reconnect_attempts = 0
        self._retry_delay_s = 0.0

    def _reopen_failed(self, capture: VideoCaptureLike | None, message: str) -> CaptureError:
        """Count a failed open attempt and push the next one further away (doubling, capped)."""
        if capture is not None:
            capture.release()
        self._reconnect_attempts += 1
        self._schedule_retry(
            min(self._retry_delay_s * 2.0 or self.reconnect_initial_delay_s, self.reconnect_max_delay_s)
        )
        self._last_error = message
        _LOG.warning(
            "%s (attempt %d, next in %.2f s)", message, self._reconnect_attempts, self._retry_delay_s
        )
        return CaptureError(message)

    def _lose_camera(self, message: str) -> None:
        _LOG.error("camera %r lost: %s", self.device, message)
        self._last_error = message
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._schedule_retry(self.reconnect_initial_delay_s)

    def _schedule_retry(self, delay_s: float) -> None:
        self._retry_delay_s = delay_s
        self._next_attempt_at_s = self._clock() + delay_s

    def _sweep(self, capture: VideoCaptureLike) -> FocalStack:
        saved_auto_modes = self._lock_exposure_and_white_balance(capture)
        try:
            frames, stamp_s = self._grab_frames(capture)
        finally:
            for prop, value in saved_auto_modes:
                capture.set(prop, value)
        height_px, width_px = frames.shape[1:3]
        return FocalStack.from_frames(
            frames, self.focus_distances_m, self.intrinsics.scaled(width_px, height_px), stamp_s, self.frame_id
        )

    def _lock_exposure_and_white_balance(self, capture: VideoCaptureLike) -> list[tuple[int, float]]:
        """Set exposure and white balance to manual at their current values; return auto modes to restore."""
        saved_auto_modes = []
        for (auto_prop, value_prop), manual_mode in (
            (_EXPOSURE_CONTROLS, self.manual_exposure_mode),
            (_WHITE_BALANCE_CONTROLS, 0.0),
        ):
            auto_mode = capture.get(auto_prop)
            current_value = capture.get(value_prop)
            saved_auto_modes.append((auto_prop, auto_mode))
            if not (capture.set(auto_prop, manual_mode) and capture.set(value_prop, current_value)):
                _LOG.debug("camera %r refused to lock property %d", self.device, value_prop)
        return saved_auto_modes

    def _grab_frames(self, capture: VideoCaptureLike) -> tuple[np.ndarray, float]:
        frames = []
        stamp_s = 0.0
        for distance_m, units in zip(self.focus_distances_m, self.lens_units):
            if not capture.set(cv2.CAP_PROP_FOCUS, units):
                raise CaptureError(
                    f"camera {self.device!r} refused focus_absolute={units:g} ({distance_m:.3f} m)"
                )
            if self.settle_time_s > 0:
                time.sleep(self.settle_time_s)
            for _ in range(self.settle_frames):
                if not capture.grab():
                    raise CaptureError(f"camera {self.device!r} stopped delivering frames")
            ok, frame_bgr = capture.read()
            if not frames:
                stamp_s = time.time()
            if not ok or frame_bgr is None:
                raise CaptureError(f"camera {self.device!r} stopped delivering frames")
            if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
                raise CaptureError(
                    f"camera {self.device!r} delivers {frame_bgr.shape} frames, expected BGR colour"
                )
            if frames and frame_bgr.shape != frames[0].shape:
                raise CaptureError(
                    f"camera {self.device!r} changed frame size mid-sweep "
                    f"({frames[0].shape[:2]} -> {frame_bgr.shape[:2]})"
                )
            frames.append(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        return np.stack(frames), stamp_s
