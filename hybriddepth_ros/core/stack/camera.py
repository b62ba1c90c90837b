"""Pinhole intrinsics and thin-lens optics of the camera that took a focal stack."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_FIELD_OF_VIEW_DEG = 0.1
"""Narrowest field of view along an image axis: a 5 m focal length on a phone-size (9.8 mm) sensor."""
MAX_FIELD_OF_VIEW_DEG = 179.0
"""Widest field of view a pinhole (rectified) image can have: beyond it fx, fy -> 0 and points -> infinity."""


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
        """Raise ValueError when the intrinsics are not those of a real camera.

        Beyond finite and positive: each axis's field of view within
        MIN_FIELD_OF_VIEW_DEG..MAX_FIELD_OF_VIEW_DEG (fx = 1e-30 px would put
        cloud points at 1e31 m), and the principal point within one image size of
        the image (a crop can move it out of the image, not further).
        """
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"intrinsic {name} is not finite ({value})")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be > 0 pixels (fx={self.fx}, fy={self.fy})")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive ({self.width}x{self.height})")
        for name, focal_px, side_px, axis in (("fx", self.fx, self.width, "horizontal"),
                                               ("fy", self.fy, self.height, "vertical")):
            fov_deg = math.degrees(2.0 * math.atan(side_px / (2.0 * focal_px)))
            if not MIN_FIELD_OF_VIEW_DEG - 1e-9 <= fov_deg <= MAX_FIELD_OF_VIEW_DEG + 1e-9:  # bounds inclusive
                raise ValueError(
                    f"{name}={focal_px:g} px gives a {fov_deg:.4g} deg {axis} field of view over {side_px} px; "
                    f"a real camera has {MIN_FIELD_OF_VIEW_DEG:g}..{MAX_FIELD_OF_VIEW_DEG:g} deg"
                )
        for name, centre_px, side_px in (("cx", self.cx, self.width), ("cy", self.cy, self.height)):
            if not -side_px <= centre_px <= 2 * side_px:
                raise ValueError(
                    f"principal point {name}={centre_px:g} px is more than one image size ({side_px} px) "
                    "outside the image"
                )

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
