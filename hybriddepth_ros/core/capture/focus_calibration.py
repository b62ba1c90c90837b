"""Lens-unit to focus-distance calibration for cameras driven by focus steps (V4L2 focus_absolute).

A focus motor or liquid lens takes unit-less steps; depth from focus needs the
distance in metres each step focuses at. Calibration: put a textured target at
several measured distances, sweep the lens over its units at each, find the
unit of sharpest focus (sub-step), and fit diopters (1/m) against units. A thin
lens focused at distance d has its image plane at 1/f - 1/d, so lens travel,
and with it a linear actuator's units, is close to linear in diopters: a
degree-1 fit in diopters is the physical law, degree 2 absorbs actuator bends.
The result is a table (lens_units, focus_distance_m) saved as YAML and
interpolated piecewise-linearly in diopters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import yaml


class FocusCalibrationError(ValueError):
    """Calibration data or a calibration table that cannot give a lens law; the message says why."""


def focus_measure(image: np.ndarray, roi_fraction: float = 0.5) -> float:
    """Variance of the Laplacian over the central `roi_fraction` of the image (grey or BGR/RGB)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    margin_y, margin_x = round(height * (1 - roi_fraction) / 2), round(width * (1 - roi_fraction) / 2)
    roi = gray[margin_y:height - margin_y, margin_x:width - margin_x].astype(np.float32)
    return float(cv2.Laplacian(roi, cv2.CV_32F, ksize=3).var())


def best_focus_units(
    lens_units: Sequence[float], images: Sequence[np.ndarray], roi_fraction: float = 0.5
) -> float:
    """Lens units of sharpest focus over one sweep, interpolated between steps.

    The focus measure falls off roughly like a Gaussian around the peak, so a
    parabola through the logarithm of the measure at the best step and its
    two neighbours (any spacing) locates the peak between steps.
    """
    units = np.asarray(lens_units, dtype=np.float64)
    if len(units) != len(images):
        raise FocusCalibrationError(f"{len(units)} lens positions but {len(images)} images")
    if len(units) < 3:
        raise FocusCalibrationError(f"a sweep needs at least 3 lens positions, got {len(units)}")
    order = np.argsort(units)
    units = units[order]
    if np.any(np.diff(units) == 0):
        raise FocusCalibrationError(f"repeated lens positions in sweep {units.tolist()}")
    measures = np.array([focus_measure(images[i], roi_fraction) for i in order])
    peak = int(np.argmax(measures))
    if measures[peak] <= 1.2 * measures.min():
        raise FocusCalibrationError("no focus peak in the sweep: is the target textured and in the lens range?")
    if peak in (0, len(units) - 1):
        raise FocusCalibrationError(
            f"sharpest image at the end of the sweep ({units[peak]:g} units): extend the sweep past best focus"
        )
    curvature_fit = np.polyfit(units[peak - 1:peak + 2], np.log(np.maximum(measures[peak - 1:peak + 2], 1e-12)), 2)
    if curvature_fit[0] >= 0:
        return float(units[peak])
    vertex = -curvature_fit[1] / (2 * curvature_fit[0])
    return float(np.clip(vertex, units[peak - 1], units[peak + 1]))


@dataclass(frozen=True)
class FocusFit:
    """Polynomial diopters(units) fitted to the measured best-focus points, with residuals."""

    distances_m: np.ndarray
    best_units: np.ndarray
    diopter_coefficients: np.ndarray
    """np.polyval coefficients, highest power first: diopters = polyval(c, units)."""

    def diopters(self, units) -> np.ndarray:
        return np.polyval(self.diopter_coefficients, units)

    @property
    def residual_diopters(self) -> np.ndarray:
        """Fitted minus measured diopters at each target distance."""
        return self.diopters(self.best_units) - 1.0 / self.distances_m

    @property
    def residual_m(self) -> np.ndarray:
        """Fitted minus measured distance in metres at each target distance."""
        return 1.0 / self.diopters(self.best_units) - self.distances_m


def fit_focus_law(distances_m: Sequence[float], best_units: Sequence[float], degree: int = 1) -> FocusFit:
    """Fit diopters = polynomial(units) of `degree` through (best units, 1/distance) pairs.

    Refuses fewer than degree + 1 (and 2) distances, repeated distances, and
    data where best focus does not move monotonically with distance: that is
    a lens law no focus motor follows, so some sweep found a wrong peak.
    """
    distances = np.asarray(distances_m, dtype=np.float64)
    units = np.asarray(best_units, dtype=np.float64)
    if degree not in (1, 2):
        raise FocusCalibrationError(f"fit degree must be 1 or 2, got {degree}")
    if distances.shape != units.shape:
        raise FocusCalibrationError(f"{distances.size} distances but {units.size} best-focus positions")
    if distances.size < max(2, degree + 1):
        raise FocusCalibrationError(
            f"a degree-{degree} fit needs at least {max(2, degree + 1)} target distances, got {distances.size}"
        )
    if not np.all(np.isfinite(distances)) or np.any(distances <= 0):
        raise FocusCalibrationError(f"target distances must be finite and > 0 m, got {distances.tolist()}")
    order = np.argsort(distances)
    distances, units = distances[order], units[order]
    if np.any(np.diff(distances) == 0):
        raise FocusCalibrationError(f"repeated target distances {distances.tolist()}")
    steps = np.diff(units)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise FocusCalibrationError(
            "best focus is not monotone in distance: "
            + ", ".join(f"{d:g} m -> {u:.1f} units" for d, u in zip(distances, units))
        )
    return FocusFit(distances, units, np.polyfit(units, 1.0 / distances, degree))


@dataclass(frozen=True)
class FocusCalibration:
    """The lens law as a table, interpolated piecewise-linearly in diopters.

    `lens_units` strictly increasing; `focus_distance_m` the distance each
    focuses at, strictly monotone. Queries outside the table raise
    FocusCalibrationError: extrapolating a lens law is guesswork.
    """

    lens_units: np.ndarray
    focus_distance_m: np.ndarray

    def __post_init__(self) -> None:
        units = np.asarray(self.lens_units, dtype=np.float64).reshape(-1)
        distances = np.asarray(self.focus_distance_m, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "lens_units", units)
        object.__setattr__(self, "focus_distance_m", distances)
        if units.size != distances.size or units.size < 2:
            raise FocusCalibrationError(
                f"need at least 2 equally many lens_units and focus_distance_m, "
                f"got {units.size} and {distances.size}"
            )
        if not (np.all(np.isfinite(units)) and np.all(np.isfinite(distances))) or np.any(distances <= 0):
            raise FocusCalibrationError("lens_units must be finite and focus_distance_m finite and > 0 m")
        if np.any(np.diff(units) <= 0):
            raise FocusCalibrationError(f"lens_units must be strictly increasing, got {units.tolist()}")
        steps = np.diff(distances)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise FocusCalibrationError(f"focus_distance_m must be strictly monotone, got {distances.tolist()}")

    @property
    def diopters(self) -> np.ndarray:
        return 1.0 / self.focus_distance_m

    @property
    def distance_range_m(self) -> tuple[float, float]:
        return float(self.focus_distance_m.min()), float(self.focus_distance_m.max())

    def units_for_distance(self, distance_m):
        """Lens units that focus at `distance_m` (scalar or array)."""
        distance = np.asarray(distance_m, dtype=np.float64)
        near_m, far_m = self.distance_range_m
        inside = np.isfinite(distance) & (distance >= near_m * (1 - 1e-9)) & (distance <= far_m * (1 + 1e-9))
        if not np.all(inside):
            raise FocusCalibrationError(f"distance {distance_m} m outside the calibrated {near_m:g}..{far_m:g} m")
        diopters, units = self.diopters, self.lens_units
        if diopters[0] > diopters[-1]:
            diopters, units = diopters[::-1], units[::-1]
        return _scalar_or_array(np.interp(1.0 / distance, diopters, units))

    def distance_for_units(self, units):
        """Focus distance in metres at lens position `units` (scalar or array)."""
        position = np.asarray(units, dtype=np.float64)
        low, high = self.lens_units[0], self.lens_units[-1]
        if np.any(~np.isfinite(position)) or np.any(position < low) or np.any(position > high):
            raise FocusCalibrationError(f"lens position {units} outside the calibrated {low:g}..{high:g} units")
        return _scalar_or_array(1.0 / np.interp(position, self.lens_units, self.diopters))

    @classmethod
    def from_fit(
        cls, fit: FocusFit, units_low: float, units_high: float, num_points: int = 17
    ) -> "FocusCalibration":
        """Tabulate a fit over units_low..units_high, keeping only positions that focus closer than infinity."""
        units = np.linspace(units_low, units_high, num_points)
        diopters = fit.diopters(units)
        keep = diopters > 0
        if keep.sum() < 2:
            raise FocusCalibrationError("the fitted lens law focuses beyond infinity over the whole lens range")
        return cls(lens_units=units[keep], focus_distance_m=1.0 / diopters[keep])

    def save(self, path: str | Path) -> None:
        table = {
            "lens_units": [float(u) for u in self.lens_units],
            "focus_distance_m": [float(d) for d in self.focus_distance_m],
        }
        header = "# Focus calibration: lens position (units) -> focus distance (m), interpolated in diopters.\n"
        Path(path).write_text(header + yaml.safe_dump(table, sort_keys=False, default_flow_style=None, width=100))

    @classmethod
    def load(cls, path: str | Path) -> "FocusCalibration":
        try:
            table = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise FocusCalibrationError(f"cannot read focus calibration {path}: {exc}") from exc
        if not isinstance(table, dict) or "lens_units" not in table or "focus_distance_m" not in table:
            raise FocusCalibrationError(f"{path}: expected keys 'lens_units' and 'focus_distance_m'")
        try:
            return cls(lens_units=np.asarray(table["lens_units"], dtype=np.float64),
                       focus_distance_m=np.asarray(table["focus_distance_m"], dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise FocusCalibrationError(f"{path}: {exc}") from exc


def calibrate_focus(
    sweeps: Mapping[float, tuple[Sequence[float], Sequence[np.ndarray]]],
    degree: int = 1,
    roi_fraction: float = 0.5,
    table_points: int = 17,
) -> tuple[FocusCalibration, FocusFit]:
    """From {target distance m: (lens units, images)} sweeps, the tabulated lens law and its fit.

    The table spans the lens positions the sweeps covered.
    """
    if len(sweeps) < 2:
        raise FocusCalibrationError(f"need sweeps at 2 or more target distances, got {len(sweeps)}")
    distances, best = [], []
    for distance_m, (units, images) in sorted(sweeps.items()):
        try:
            best.append(best_focus_units(units, images, roi_fraction))
        except FocusCalibrationError as exc:
            raise FocusCalibrationError(f"target at {distance_m:g} m: {exc}") from exc
        distances.append(distance_m)
    fit = fit_focus_law(distances, best, degree)
    all_units = np.concatenate([np.asarray(units, dtype=np.float64) for units, _ in sweeps.values()])
    return FocusCalibration.from_fit(fit, all_units.min(), all_units.max(), table_points), fit


def load_calibration_sweeps(root: str | Path) -> dict[float, tuple[list[float], list[np.ndarray]]]:
    """Read `root/<distance_m>/<units>.<ext>` into {distance: (units, grey images)}.

    Folder names are target distances in metres, file stems lens positions;
    other entries raise, so a typo cannot silently drop data.
    """
    root = Path(root)
    if not root.is_dir():
        raise FocusCalibrationError(f"calibration folder {root} does not exist")
    sweeps: dict[float, tuple[list[float], list[np.ndarray]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        distance_m = _number(folder.name, f"{folder}: folder name is not a distance in metres")
        units, images = [], []
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            units.append(_number(path.stem, f"{path}: file name is not a lens position"))
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise FocusCalibrationError(f"{path}: unreadable image file")
            images.append(image)
        sweeps[distance_m] = (units, images)
    if not sweeps:
        raise FocusCalibrationError(f"{root} has no <distance_m>/ subfolders")
    return sweeps


def _number(text: str, message: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FocusCalibrationError(message) from None
    if not np.isfinite(value):
        raise FocusCalibrationError(message)
    return value


def _scalar_or_array(values: np.ndarray):
    return float(values) if values.ndim == 0 else values
