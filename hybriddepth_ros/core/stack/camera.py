"""Pinhole intrinsics and thin-lens optics of the camera that took a focal stack."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels for an image of `width` x `height`.

    Follows the ROS camera optical frame (REP 103): x right, y down, z forward.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def validate(self) -> None:
        """Raise ValueError when the intrinsics cannot back-project pixels."""
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"intrinsic {name} is not finite ({value})")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be > 0 pixels (fx={self.fx}, fy={self.fy})")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive ({self.width}x{self.height})")

    def scaled(self, width: int, height: int) -> "CameraIntrinsics":
        """Intrinsics of the same camera after resizing the image to `width` x `height`."""
        sx = width / self.width
        sy = height / self.height
        return CameraIntrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=width,
            height=height,
        )

    @staticmethod
    def from_horizontal_fov(horizontal_fov_deg: float, width: int, height: int) -> "CameraIntrinsics":
        """A centred pinhole with square pixels and this horizontal field of view (a camera without calibration)."""
        if not 0.0 < horizontal_fov_deg < 180.0:
            raise ValueError(f"horizontal field of view must be in (0, 180) degrees, got {horizontal_fov_deg}")
        focal_px = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
        return CameraIntrinsics(
            fx=focal_px, fy=focal_px, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=width, height=height
        )

    @staticmethod
    def from_lens(lens: "ThinLens", width: int, height: int) -> "CameraIntrinsics":
        """Intrinsics implied by a thin lens on a sensor of square pixels, centred."""
        f_px = lens.focal_length_m / lens.pixel_pitch_m
        return CameraIntrinsics(
            fx=f_px, fy=f_px, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=width, height=height
        )


@dataclass(frozen=True)
class ThinLens:
    """A thin lens: focal length and pixel pitch in metres, aperture as an f-number.

    Defaults are a small machine-vision camera with a liquid lens; the NYU
    protocol of the paper uses 50 mm, f/8, 12 um pixels.
    """

    focal_length_m: float = 0.006
    f_number: float = 1.8
    pixel_pitch_m: float = 3.0e-6

    @property
    def aperture_diameter_m(self) -> float:
        return self.focal_length_m / self.f_number

    def validate(self) -> None:
        if not (self.focal_length_m > 0 and self.f_number > 0 and self.pixel_pitch_m > 0):
            raise ValueError(f"thin-lens parameters must be > 0: {self}")
