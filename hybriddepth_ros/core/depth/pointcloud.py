"""Organised point clouds from metric depth, in the camera optical frame (REP 103)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..stack.camera import CameraIntrinsics


def decimate_intrinsics(intrinsics: CameraIntrinsics, decimation: int) -> CameraIntrinsics:
    """Intrinsics of the grid that keeps every `decimation`-th pixel starting at pixel 0."""
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    width = -(-intrinsics.width // decimation)
    height = -(-intrinsics.height // decimation)
    return CameraIntrinsics(
        fx=intrinsics.fx / decimation,
        fy=intrinsics.fy / decimation,
        cx=intrinsics.cx / decimation,
        cy=intrinsics.cy / decimation,
        width=width,
        height=height,
    )


def back_project(depth_m: np.ndarray, intrinsics: CameraIntrinsics, decimation: int = 1) -> np.ndarray:
    """(h, w, 3) float32 points x right, y down, z forward in metres; NaN where depth is unknown.

    Pixel (u, v) with depth z maps to ((u - cx) z / fx, (v - cy) z / fy, z): depth
    images of REP 118 hold z, not the ray length. With decimation d the grid keeps
    pixels (d*i, d*j), so the cloud stays organised (height x width).
    """
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth {depth_m.shape[::-1]} does not match intrinsics {intrinsics.width}x{intrinsics.height}"
        )
    z = np.asarray(depth_m, dtype=np.float32)[::decimation, ::decimation]
    rows, cols = z.shape
    u = np.arange(0, cols * decimation, decimation, dtype=np.float32)
    v = np.arange(0, rows * decimation, decimation, dtype=np.float32)
    x = (u[None, :] - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx) * z
    y = (v[:, None] - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy) * z
    points = np.stack([x, y, z], axis=-1)
    points[~np.isfinite(z)] = np.nan
    return points


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB packed into the float32 `rgb` field that RViz and PCL read."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed.astype(np.uint32).view(np.float32)


def write_ply(path: str | Path, points: np.ndarray, rgb: np.ndarray) -> int:
    """Write the finite points with colours as binary little-endian PLY; return the count."""
    points = points.reshape(-1, 3)
    colours = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    keep = np.all(np.isfinite(points), axis=1)
    vertex = np.empty(
        int(keep.sum()),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    vertex["x"], vertex["y"], vertex["z"] = points[keep].T
    vertex["red"], vertex["green"], vertex["blue"] = colours[keep].T
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex.tobytes())
    return len(vertex)
