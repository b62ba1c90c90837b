"""ROS message <-> core conversions, one kind of message per module.

image (sensor_msgs/Image), camera_info, stamp, focal_stack
(hybriddepth_ros/FocalStack) and point_cloud (sensor_msgs/PointCloud2).
cv_bridge (decided per call: while it works) and sensor_msgs_py are used when
the ROS install has them; the numpy fallbacks run otherwise and are tested to
agree with them. Decoding (message -> core) is ROS-free, in
core/stack/message_decoding.py, so the bag reader (core/data/bags.py) applies
the same rules.
"""

from .camera_info import camera_info_to_intrinsics, intrinsics_to_camera_info
from .focal_stack import focal_stack_from_msg, focal_stack_to_msg
from .image import (
    SUPPORTED_ENCODINGS,
    ConversionError,
    depth_image_to_metres,
    float_image,
    float_image_to_array,
    image_to_rgb8,
    image_to_rgb8_numpy,
    rgb8_to_image,
)
from .point_cloud import CLOUD_FIELDS, cloud_to_array, organised_cloud, organised_cloud_numpy
from .stamp import seconds_to_stamp, stamp_to_ns, stamp_to_seconds

__all__ = [
    "CLOUD_FIELDS",
    "SUPPORTED_ENCODINGS",
    "ConversionError",
    "camera_info_to_intrinsics",
    "cloud_to_array",
    "depth_image_to_metres",
    "float_image",
    "float_image_to_array",
    "focal_stack_from_msg",
    "focal_stack_to_msg",
    "image_to_rgb8",
    "image_to_rgb8_numpy",
    "intrinsics_to_camera_info",
    "organised_cloud",
    "organised_cloud_numpy",
    "rgb8_to_image",
    "seconds_to_stamp",
    "stamp_to_ns",
    "stamp_to_seconds",
]
