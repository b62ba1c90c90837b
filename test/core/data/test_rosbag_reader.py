"""ROS 2 bags (MCAP and sqlite3) written here with rosbags: FocalStack + depth paired by stamp, no ROS needed."""

import numpy as np
import pytest

from support.stacks import DISTANCES_M, textured_stack
from hybriddepth_ros.core.data import DatasetError, detect_kind, open_dataset
from hybriddepth_ros.core.data.bags import FOCAL_STACK_TYPE, IMAGE_TYPE, focal_stack_typestore

rosbag2 = pytest.importorskip("rosbags.rosbag2")
HEIGHT, WIDTH = 16, 24
STACK_STAMPS_NS = (1_000_000_000, 2_000_000_000, 3_000_000_000)


def ros_time(typestore, stamp_ns: int):
    return typestore.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)


def header(typestore, stamp_ns: int, frame_id: str = "camera_optical_frame"):
    return typestore.types["std_msgs/msg/Header"](stamp=ros_time(typestore, stamp_ns), frame_id=frame_id)


def image(typestore, stamp_ns: int, pixels: np.ndarray, encoding: str):
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    step = pixels.shape[1] * pixels.dtype.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    return typestore.types[IMAGE_TYPE](
        header=header(typestore, stamp_ns), height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
        is_bigendian=0, step=step, data=data,
    )


def focal_stack_msg(typestore, stamp_ns: int, stack):
    types = typestore.types
    k = stack.intrinsics
    info = types["sensor_msgs/msg/CameraInfo"](
        header=header(typestore, stamp_ns), height=k.height, width=k.width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], float), r=np.eye(3).reshape(-1),
        p=np.zeros(12), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    return types[FOCAL_STACK_TYPE](
        header=header(typestore, stamp_ns), frames=[image(typestore, stamp_ns, f, "rgb8") for f in stack.frames],
        focus_distances=np.asarray(stack.focus_distances_m, np.float32), camera_info=info,
        reference_index=0, registered=True, sweep_duration=0.5, sweep_number=1,
    )


def depth_for(index: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), 1.0 + index, np.float32)


def write_bag(path, storage: str, depth_encoding: str):
    """Three stacks; depth images 3 ms after each stack, an unpaired depth image, an extra RGB-free topic."""
    typestore = focal_stack_typestore()
    plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
    with rosbag2.Writer(path, version=9, storage_plugin=plugin) as writer:
        stacks = writer.add_connection("focal_stack", FOCAL_STACK_TYPE, typestore=typestore)
        depths = writer.add_connection("camera/aligned_depth", IMAGE_TYPE, typestore=typestore)
        for index, stamp_ns in enumerate(STACK_STAMPS_NS):
            stack = textured_stack(HEIGHT, WIDTH, seed=index)
            writer.write(stacks, stamp_ns, typestore.serialize_cdr(focal_stack_msg(typestore, stamp_ns, stack), FOCAL_STACK_TYPE))
            depth_m = depth_for(index)
            pixels = (depth_m * 1000).astype(np.uint16) if depth_encoding == "16UC1" else depth_m
            depth_stamp = stamp_ns + 3_000_000
            writer.write(depths, depth_stamp, typestore.serialize_cdr(image(typestore, depth_stamp, pixels, depth_encoding), IMAGE_TYPE))
        lonely = STACK_STAMPS_NS[-1] + 500_000_000
        writer.write(depths, lonely, typestore.serialize_cdr(image(typestore, lonely, depth_for(9), "32FC1"), IMAGE_TYPE))


@pytest.mark.parametrize("storage, depth_encoding", [("mcap", "32FC1"), ("sqlite3", "16UC1")])
def test_bag_yields_each_stack_with_its_depth(tmp_path, storage, depth_encoding):
    path = tmp_path / "recording"
    write_bag(path, storage, depth_encoding)
    assert detect_kind(path) == "rosbag"
    dataset = open_dataset(None, path)
    assert len(dataset) == 3 and "camera/aligned_depth" in dataset.describe()
    for index, stamp_ns in enumerate(STACK_STAMPS_NS):
        sample = dataset[index]
        expected = textured_stack(HEIGHT, WIDTH, seed=index)
        assert sample.name == str(stamp_ns)
        np.testing.assert_array_equal(sample.stack.frames, expected.frames)
        np.testing.assert_allclose(sample.stack.focus_distances_m, DISTANCES_M, rtol=1e-6)
        assert sample.stack.registered and sample.stack.stamp_s == pytest.approx(stamp_ns * 1e-9)
        np.testing.assert_allclose(sample.depth_m, depth_for(index))
        assert sample.valid_mask.all()


def test_pairing_slop_and_topic_errors_are_clear(tmp_path):
    path = tmp_path / "recording"
    write_bag(path, "mcap", "32FC1")
    with pytest.raises(DatasetError, match="stack has a 'camera/aligned_depth' image within 0.001 s"):
        open_dataset("rosbag", path, slop_s=0.001)
    with pytest.raises(DatasetError, match="no sensor_msgs/msg/Image topic 'depth'"):
        open_dataset("rosbag", path, depth_topic="depth")
    with pytest.raises(DatasetError, match="no hybriddepth_ros/msg/FocalStack topic 'stacks'"):
        open_dataset("rosbag", path, stack_topic="stacks")
    garbage = tmp_path / "broken.mcap"
    garbage.write_bytes(b"not a bag")
    with pytest.raises(DatasetError, match="broken.mcap: not a readable rosbag2 bag"):
        open_dataset(None, garbage)
