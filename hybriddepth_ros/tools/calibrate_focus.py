"""Fit a lens-units -> focus-distance table from focus sweeps of a textured target.

Folder layout (ROOT):
    ROOT/<distance_m>/<units>.<ext>
e.g. calib/0.25/120.png is the target at 0.25 m (measured from the sensor)
with the lens at 120 units (V4L2 focus_absolute). Take one sweep over the lens
range per distance, at 3 or more distances spread over the working range (in
diopters); every sweep must pass through best focus. The target should fill
the centre of the image (the central --roi fraction is measured).

Prints the best-focus lens position per distance and the fit residuals in
diopters and metres, then writes the YAML table (`lens_units`,
`focus_distance_m`) that the v4l2 capture backend loads with
FocusCalibration.load().
"""

from __future__ import annotations

import argparse
import sys

from ..core.capture.focus_calibration import FocusCalibrationError, calibrate_focus, load_calibration_sweeps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder of <distance_m>/<units>.<ext> sweeps")
    parser.add_argument("--out", default="focus_calibration.yaml", help="YAML table to write")
    parser.add_argument("--degree", type=int, choices=[1, 2], default=1,
                        help="polynomial degree of diopters vs units (1: thin-lens law)")
    parser.add_argument("--roi", type=float, default=0.5, help="central fraction of the image to measure")
    parser.add_argument("--table-points", type=int, default=17, help="rows of the written table")
    args = parser.parse_args(argv)

    try:
        sweeps = load_calibration_sweeps(args.root)
        calibration, fit = calibrate_focus(sweeps, args.degree, args.roi, args.table_points)
        calibration.save(args.out)
    except (FocusCalibrationError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print("distance_m  best_units  residual_diopters  residual_m")
    for distance_m, units, residual_d, residual_m in zip(
        fit.distances_m, fit.best_units, fit.residual_diopters, fit.residual_m
    ):
        print(f"{distance_m:10.3f}  {units:10.2f}  {residual_d:17.4f}  {residual_m:10.4f}")
    terms = " + ".join(f"{c:.6g}*u^{p}" for p, c in zip(range(args.degree, -1, -1), fit.diopter_coefficients))
    rms = float((fit.residual_diopters ** 2).mean() ** 0.5)
    print(f"diopters(u) = {terms}; rms residual {rms:.4f} D")
    near_m, far_m = calibration.distance_range_m
    print(f"wrote {args.out}: {len(calibration.lens_units)} rows, {near_m:.3f}..{far_m:.3f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
