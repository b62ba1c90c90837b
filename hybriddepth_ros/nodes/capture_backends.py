"""Parameters of focus_sweep_node's capture backends, and building the chosen one.

Each backend's parameters live under its own prefix (`simulated.`, `v4l2.`,
`directory.`, `phone.`, `driver.`); `camera.` holds intrinsics shared by the real
cameras. Adding a backend means its specs and a build branch here (and its name
in core/capture/__init__.py), nothing in the node itself.
"""

from __future__ import annotations

from rclpy.node import Node

from ..core.capture import CAPTURE_BACKENDS
from ..core.capture.base import CaptureBackend
from ..core.capture.directory import DEFAULT_CACHE_BYTES
from ..core.capture.phone import protocol as phone
from ..core.stack.camera import CameraIntrinsics
from ..core.stack.focal_stack import MAX_FRAMES, MAX_IMAGE_SIDE_PX
from .parameters import ParameterSpec, not_empty

_MIB = 1024 * 1024



def _token_problem(token: str) -> str | None:
    problem = token and phone.token_problem(token)
    return f"phone.token: {problem}" if problem else None


CAPTURE_PARAMETERS = (
    ParameterSpec("camera.horizontal_fov_deg", 70.0,
                  "Horizontal field of view of an uncalibrated real camera, degrees (used when camera.fx is 0).",
                  low=1.0, high=179.0),
    ParameterSpec("camera.fx", 0.0, "Calibrated focal length in x, pixels at width x height; 0: use the field of view.",
                  low=0.0, high=1e6),
    ParameterSpec("camera.fy", 0.0, "Focal length in y, pixels; 0: equal to camera.fx.", low=0.0, high=1e6),
    ParameterSpec("camera.cx", 0.0, "Principal point x, pixels (with camera.fx > 0).", low=-MAX_IMAGE_SIDE_PX,
                  high=2 * MAX_IMAGE_SIDE_PX),
    ParameterSpec("camera.cy", 0.0, "Principal point y, pixels (with camera.fx > 0).", low=-MAX_IMAGE_SIDE_PX,
                  high=2 * MAX_IMAGE_SIDE_PX),
    ParameterSpec("simulated.seed", 0, "Scene seed of the simulated camera.", low=0, high=2**31 - 1),
    ParameterSpec("simulated.scene_change_every", 0, "0: one scene for every stack; N: the next scene every N stacks.",
                  low=0, high=1_000_000),
    ParameterSpec("simulated.noise_std", 1.0, "Gaussian sensor noise of the simulated camera, 8-bit digital numbers.",
                  low=0.0, high=64.0),
    ParameterSpec("v4l2.device", "/dev/video0", "V4L2 device path or index.", check=not_empty("v4l2.device")),
    ParameterSpec("v4l2.calibration_file", "",
                  "Lens-unit -> metres table written by `python -m hybriddepth_ros.tools.calibrate_focus` (required)."),
    ParameterSpec("v4l2.settle_frames", 3, "Frames discarded after each focus change (exposed while the lens moved).",
                  low=0, high=30),
    ParameterSpec("v4l2.settle_time_s", 0.0, "Wait after each focus change, seconds.", low=0.0, high=5.0),
    ParameterSpec("directory.path", "", "A focal-stack folder (focus in metres = last _ field of each file name), "
                  "or a folder of such folders (required)."),
    ParameterSpec("directory.loop", True, "Start again after the last stack folder."),
    ParameterSpec("directory.cache_mib", DEFAULT_CACHE_BYTES // _MIB,
                  "Decoded stacks kept for replay loops, MiB (least recently used dropped first); 0: none.",
                  low=0, high=64 * 1024),
    ParameterSpec("phone.host", "127.0.0.1", "Address the phone bridge listens on; anything but loopback needs "
                  "phone.certfile/keyfile, or the token travels in clear text (warned).",
                  check=not_empty("phone.host")),
    ParameterSpec("phone.port", phone.DEFAULT_PORT, "TCP port of the phone bridge; 0 binds a free one.",
                  low=0, high=65535),
    ParameterSpec("phone.token", "", "Shared secret every phone message carries (required; printable, without "
                  "quotes or backslashes).", check=_token_problem),
    ParameterSpec("phone.certfile", "", "PEM certificate (chain) for wss://; with phone.keyfile. Empty: ws://."),
    ParameterSpec("phone.keyfile", "", "PEM private key of phone.certfile."),
    ParameterSpec("phone.max_message_bytes", phone.DEFAULT_MAX_MESSAGE_BYTES,
                  "Largest WebSocket message accepted (refused before it is read, authenticated or not), bytes.",
                  low=1024, high=256 * _MIB),
    ParameterSpec("phone.max_frame_pixels", phone.DEFAULT_MAX_FRAME_PIXELS,
                  "Largest frame, pixels, checked on the JPEG header before decoding.",
                  low=64, high=MAX_IMAGE_SIDE_PX * MAX_IMAGE_SIDE_PX),
    ParameterSpec("phone.max_decoded_pixels", phone.DEFAULT_MAX_DECODED_PIXELS,
                  "Decoded pixels the bridge holds at most in partial and completed stacks (3 bytes each); "
                  "at least 2 x phone.max_frame_pixels.", low=128, high=4_000_000_000),
    ParameterSpec("phone.max_frames_per_stack", phone.DEFAULT_MAX_FRAMES_PER_STACK, "Largest `count` of a stack.",
                  low=2, high=MAX_FRAMES),
    ParameterSpec("phone.max_clients", phone.DEFAULT_MAX_CLIENTS,
                  "Connections at once; more are refused in the handshake (HTTP 503).", low=1, high=1024),
    ParameterSpec("phone.max_pending_stacks", phone.DEFAULT_MAX_PENDING_STACKS,
                  "Partial stacks assembled at once; a new one beyond is refused as busy.", low=1, high=1024),
    ParameterSpec("phone.max_stacks_per_client", phone.DEFAULT_MAX_STACKS_PER_CLIENT,
                  "Partial stacks one connection may own; starting one more evicts its oldest (it is told).",
                  low=1, high=1024),
    ParameterSpec("phone.max_completed_stacks", phone.DEFAULT_MAX_COMPLETED_STACKS,
                  "Completed stacks waiting for the sweep timer; a new one drops the oldest.", low=1, high=64),
    ParameterSpec("phone.stack_timeout_s", phone.DEFAULT_STACK_TIMEOUT_S,
                  "A partial stack without a frame for this long is dropped (its owner is told), seconds.",
                  low=0.0, low_open=True, high=3600.0),
    ParameterSpec("phone.auth_timeout_s", phone.DEFAULT_AUTH_TIMEOUT_S,
                  "A connection without an authenticated message after this long is closed, seconds.",
                  low=0.0, low_open=True, high=600.0),
    ParameterSpec("driver.image_topic", "image_raw", "Images of the camera driver.", check=not_empty("driver.image_topic")),
    ParameterSpec("driver.focus_command_topic", "focus/command", "std_msgs/Float32 focus commands, metres.",
                  check=not_empty("driver.focus_command_topic")),
    ParameterSpec("driver.focus_state_topic", "focus/state", "hybriddepth_ros/FocusState of the driver.",
                  check=not_empty("driver.focus_state_topic")),
    ParameterSpec("driver.camera_info_topic", "camera_info", "CameraInfo of the driver (optional calibration).",
                  check=not_empty("driver.camera_info_topic")),
    ParameterSpec("driver.sync_slop_s", 0.02, "Largest stamp difference of a paired image and focus state, seconds.",
                  low=0.0, low_open=True, high=1.0),
    ParameterSpec("driver.focus_tolerance_m", 0.02, "Reached focus must be this close to the command, metres.",
                  low=0.0, low_open=True, high=10.0),
    ParameterSpec("driver.settle_time_s", 0.05, "Wait after the lens reports settled, seconds.", low=0.0, high=5.0),
    ParameterSpec("driver.sweep_timeout_s", 5.0, "A sweep that takes longer fails with an ERROR diagnostic, seconds.",
                  low=0.0, low_open=True, high=600.0),
)
"""Each backend's parameters under its own prefix; `camera.` holds intrinsics shared by the real cameras."""


def configured_intrinsics(node: Node, width: int, height: int) -> CameraIntrinsics:
    """`camera.fx/fy/cx/cy` when fx > 0, else a centred pinhole from `camera.horizontal_fov_deg`.

    ValueError (a configuration error) when they are not those of a real camera at width x height.
    """
    value = lambda name: float(node.get_parameter(name).value)  # noqa: E731
    if value("camera.fx") > 0:
        intrinsics = CameraIntrinsics(
            fx=value("camera.fx"), fy=value("camera.fy") or value("camera.fx"),
            cx=value("camera.cx"), cy=value("camera.cy"), width=width, height=height,
        )
    else:
        intrinsics = CameraIntrinsics.from_horizontal_fov(value("camera.horizontal_fov_deg"), width, height)
    try:
        intrinsics.validate()
    except ValueError as exc:
        raise ValueError(f"camera.fx/fy/cx/cy at width x height {width}x{height}: {exc}") from None
    return intrinsics


def create_capture_backend(node: Node, name: str, focus_distances_m: list[float]) -> CaptureBackend:
    """The backend called `name`, configured from `node`'s parameters."""
    value = lambda param: node.get_parameter(param).value  # noqa: E731
    width, height = int(value("width")), int(value("height"))
    if name == "simulated":
        from ..core.capture.simulated import SimulatedCapture

        return SimulatedCapture(
            focus_distances_m=focus_distances_m,
            width=width,
            height=height,
            seed=int(value("simulated.seed")),
            scene_change_every=int(value("simulated.scene_change_every")),
            noise_std=float(value("simulated.noise_std")),
        )
    if name == "v4l2":
        from ..core.capture.v4l2 import V4L2Capture
        from ..core.capture.focus_calibration import FocusCalibration

        calibration_file = value("v4l2.calibration_file")
        if not calibration_file:
            raise ValueError(
                "the v4l2 backend needs v4l2.calibration_file, the lens-unit -> metres table "
                "written by `python -m hybriddepth_ros.tools.calibrate_focus`"
            )
        device = value("v4l2.device")
        return V4L2Capture(
            device=int(device) if str(device).isdigit() else device,
            focus_distances_m=focus_distances_m,
            calibration=FocusCalibration.load(calibration_file),
            intrinsics=configured_intrinsics(node, width, height),
            settle_frames=int(value("v4l2.settle_frames")),
            settle_time_s=float(value("v4l2.settle_time_s")),
            frame_size_px=(width, height),
        )
    if name == "directory":
        from ..core.capture.directory import DirectoryCapture

        if not value("directory.path"):
            raise ValueError("the directory backend needs directory.path (a focal-stack folder)")
        return DirectoryCapture(
            root=value("directory.path"),
            width_px=width,
            height_px=height,
            horizontal_fov_deg=float(value("camera.horizontal_fov_deg")),
            intrinsics=configured_intrinsics(node, width, height) if value("camera.fx") > 0 else None,
            loop=bool(value("directory.loop")),
            max_cache_bytes=int(value("directory.cache_mib")) * _MIB,
        )
    if name == "phone":
        from ..core.capture.phone.server import PhoneCapture

        if not value("phone.token"):
            raise ValueError("the phone backend needs phone.token (the secret the phone app sends)")
        return PhoneCapture(
            token=value("phone.token"),
            host=value("phone.host"),
            port=int(value("phone.port")),
            certfile=value("phone.certfile") or None,
            keyfile=value("phone.keyfile") or None,
            intrinsics=configured_intrinsics(node, width, height),
            **{option: int(value(f"phone.{option}")) for option in (
                "max_message_bytes", "max_frame_pixels", "max_decoded_pixels", "max_frames_per_stack",
                "max_clients", "max_pending_stacks", "max_stacks_per_client", "max_completed_stacks")},
            stack_timeout_s=float(value("phone.stack_timeout_s")),
            auth_timeout_s=float(value("phone.auth_timeout_s")),
        )
    if name == "driver":
        from .driver_capture import DriverCapture

        return DriverCapture(
            node,
            focus_distances_m=focus_distances_m,
            image_topic=value("driver.image_topic"),
            focus_command_topic=value("driver.focus_command_topic"),
            focus_state_topic=value("driver.focus_state_topic"),
            camera_info_topic=value("driver.camera_info_topic"),
            sync_slop_s=float(value("driver.sync_slop_s")),
            focus_tolerance_m=float(value("driver.focus_tolerance_m")),
            settle_time_s=float(value("driver.settle_time_s")),
            sweep_timeout_s=float(value("driver.sweep_timeout_s")),
            intrinsics=configured_intrinsics(node, width, height),
        )
    raise ValueError(f"unknown camera backend '{name}' (known: {', '.join(CAPTURE_BACKENDS)})")
