"""hybriddepth_ros/FocalStack <-> core FocalStack."""

from __future__ import annotations

from std_msgs.msg import Header

from ...core.stack.focal_stack import FocalStack
from ...core.stack.message_decoding import focal_stack_from_msg as core_focal_stack_from_msg
from .camera_info import intrinsics_to_camera_info
from .image import image_to_rgb8, rgb8_to_image
from .stamp import seconds_to_stamp


def focal_stack_from_msg(msg) -> FocalStack:
    """Core FocalStack from a hybriddepth_ros/FocalStack message (frames through cv_bridge when installed).

    The decoding rules are core/stack/message_decoding.py's, which bag files are read by too.
    """
    return core_focal_stack_from_msg(msg, decode_image=image_to_rgb8)


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
