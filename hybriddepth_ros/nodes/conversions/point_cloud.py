"""Organised sensor_msgs/PointCloud2 (x, y, z, rgb) from back-projected depth, and back.

sensor_msgs_py builds the cloud when the ROS install has it; the numpy
fallback runs where it is absent (the PyPI wheels) and is tested to agree.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ...core.depth.pointcloud import pack_rgb_float

try:  # pragma: no cover - depends on the ROS install
    from sensor_msgs_py import point_cloud2 as _point_cloud2
except ImportError:
    _point_cloud2 = None

CLOUD_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
]
_CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def organised_cloud(points: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """Organised PointCloud2 (x, y, z, rgb) from (h, w, 3) points and (h, w, 3) uint8 colours.

    NaN points stay in place (is_dense = False) so the cloud keeps the image grid.
    Built with sensor_msgs_py when installed, else by the numpy fallback.
    """
    structured = np.empty(points.shape[:2], dtype=_CLOUD_DTYPE)
    structured["x"], structured["y"], structured["z"] = points[..., 0], points[..., 1], points[..., 2]
    structured["rgb"] = pack_rgb_float(rgb)
    if _point_cloud2 is not None:  # pragma: no cover - depends on the ROS install
        cloud = _point_cloud2.create_cloud(header, CLOUD_FIELDS, structured.reshape(-1))
        cloud.height, cloud.width = points.shape[0], points.shape[1]
        cloud.row_step = cloud.point_step * cloud.width
        cloud.is_dense = False
        return cloud
    return organised_cloud_numpy(structured, header)


def organised_cloud_numpy(structured: np.ndarray, header: Header) -> PointCloud2:
    """The numpy fallback of organised_cloud, from an (h, w) structured array."""
    height, width = structured.shape
    cloud = PointCloud2(header=header, height=height, width=width, fields=CLOUD_FIELDS)
    cloud.is_bigendian = False
    cloud.point_step = _CLOUD_DTYPE.itemsize
    cloud.row_step = cloud.point_step * width
    cloud.is_dense = False
    cloud.data = structured.tobytes()
    return cloud


def cloud_to_array(cloud: PointCloud2) -> np.ndarray:
    """(height, width) structured array of an x, y, z, rgb cloud made by organised_cloud."""
    return np.frombuffer(bytes(cloud.data), dtype=_CLOUD_DTYPE).reshape(cloud.height, cloud.width)
