"""hybriddepth_ros/FocalStack <-> core FocalStack."""

from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from ...core.stack.focal_stack import FocalStack
from .camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from .image import ConversionError, image_to_rgb8, rgb8_to_image
from .stamp import seconds_to_stamp, stamp_to_seconds


def focal_stack_from_msg(msg) -> FocalStack:
    """Core FocalStack from a hybriddepth_ros/FocalStack message; ConversionError says why not.

    Only what the conversion needs is checked here (frame count, sizes and
    encodings); the stack itself is validated by DepthFusion, the one place.
    """
    if len(msg.frames) == 0:
        raise ConversionError("empty focal stack (no frames)")
    if len(msg.frames) != len(msg.focus_distances):
        raise ConversionError(
            f"{len(msg.frames)} frames but {len(msg.focus_distances)} focus distances"
        )
    first = msg.frames[0]
    for index, frame in enumerate(msg.frames):
        if (frame.width, frame.height) != (first.width, first.height):
            raise ConversionError(
                f"frame {index} is {frame.width}x{frame.height}, frame 0 is {first.width}x{first.height}"
            )
        if frame.encoding != first.encoding:
            raise ConversionError(f"frame {index} is '{frame.encoding}', frame 0 is '{first.encoding}'")
    intrinsics = camera_info_to_intrinsics(msg.camera_info)
    frames = np.stack([image_to_rgb8(frame) for frame in msg.frames])
    stack = FocalStack(
        frames=frames,
        focus_distances_m=np.asarray(msg.focus_distances, dtype=np.float64),
        intrinsics=intrinsics,
        reference_index=int(msg.reference_index),
        registered=bool(msg.registered),
        stamp_s=stamp_to_seconds(msg.header.stamp),
        frame_id=msg.header.frame_id,
    )
    return stack


def focal_stack_to_msg(stack: FocalStack, msg_type, sweep_duration_s: float = 0.0, sweep_number: int = 0):
    """A FocalStack message (of `msg_type`) from a core FocalStack, frames as rgb8.

    `sweep_number` is the publisher's count of its stacks (1, 2, ...; 0: not counted).
    """
    header = Header(frame_id=stack.frame_id)
    seconds_to_stamp(stack.stamp_s, header.stamp)
    msg = msg_type()
    msg.header = header
    msg.frames = [rgb8_to_image(frame, header) for frame in stack.frames]
    msg.focus_distances = [float(d) for d in stack.focus_distances_m]
    msg.camera_info = intrinsics_to_camera_info(stack.intrinsics, header)
    msg.reference_index = int(stack.reference_index)
    msg.registered = bool(stack.registered)
    msg.sweep_duration = float(sweep_duration_s)
    msg.sweep_number = int(sweep_number)
    return msg
