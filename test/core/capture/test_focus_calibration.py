"""Focus calibration: synthetic sweeps blurred by a known lens law, the fit recovers it."""

import cv2
import numpy as np
import pytest

from hybriddepth_ros.core.capture.focus_calibration import (
    FocusCalibration,
    FocusCalibrationError,
    best_focus_units,
    calibrate_focus,
    fit_focus_law,
    load_calibration_sweeps,
)
from hybriddepth_ros.tools.calibrate_focus import main as calibrate_focus_cli
from support.stacks import textured_image

SWEEP_UNITS = np.arange(0.0, 801.0, 40.0)
TARGET_DISTANCES_M = (0.15, 0.25, 0.4, 0.7, 1.2)
BLUR_PX_PER_DIOPTER = 1.5  # thin lens: circle of confusion grows linearly with focus error in diopters
LAW_TOLERANCE_DIOPTERS = 0.03


def true_diopters(units):
    """The simulated lens: 0.5 D (2 m) at 0 units to 8.5 D (0.118 m) at 800 units."""
    return 0.5 + 0.01 * np.asarray(units)


def true_units(distance_m):
    return (1.0 / distance_m - 0.5) / 0.01


def render_sweep(distance_m, units=SWEEP_UNITS):
    target = textured_image(96, 96, seed=9)
    images = []
    for unit in units:
        sigma_px = 0.6 + BLUR_PX_PER_DIOPTER * abs(true_diopters(unit) - 1.0 / distance_m)
        images.append(np.clip(cv2.GaussianBlur(target, (0, 0), sigma_px), 0, 255).astype(np.uint8))
    return list(units), images


@pytest.fixture(scope="module")
def sweeps():
    return {distance_m: render_sweep(distance_m) for distance_m in TARGET_DISTANCES_M}


def test_best_focus_is_found_between_steps(sweeps):
    step = SWEEP_UNITS[1] - SWEEP_UNITS[0]
    for distance_m, (units, images) in sweeps.items():
        assert abs(best_focus_units(units, images) - true_units(distance_m)) < 0.15 * step


def test_fit_recovers_the_lens_law(sweeps):
    calibration, fit = calibrate_focus(sweeps)
    slope, intercept = fit.diopter_coefficients
    assert slope == pytest.approx(0.01, rel=0.01) and intercept == pytest.approx(0.5, abs=0.02)
    assert np.all(np.abs(fit.residual_diopters) < 0.05)
    np.testing.assert_allclose(fit.residual_m, 1.0 / fit.diopters(fit.best_units) - fit.distances_m)
    units = np.linspace(0.0, 800.0, 33)
    table_diopters = 1.0 / calibration.distance_for_units(units)
    assert np.max(np.abs(table_diopters - true_diopters(units))) < LAW_TOLERANCE_DIOPTERS
    assert calibration.units_for_distance(0.5) == pytest.approx(true_units(0.5), abs=LAW_TOLERANCE_DIOPTERS / 0.01)
    assert calibration.distance_for_units(calibration.units_for_distance(0.3)) == pytest.approx(0.3, rel=1e-9)


def test_quadratic_fit_is_offered_and_stays_close(sweeps):
    _, fit = calibrate_focus(sweeps, degree=2)
    assert fit.diopter_coefficients.shape == (3,)
    assert np.max(np.abs(fit.diopters(SWEEP_UNITS) - true_diopters(SWEEP_UNITS))) < 2 * LAW_TOLERANCE_DIOPTERS


def test_yaml_round_trip(tmp_path, sweeps):
    calibration, _ = calibrate_focus(sweeps)
    path = tmp_path / "focus.yaml"
    calibration.save(path)
    loaded = FocusCalibration.load(path)
    np.testing.assert_allclose(loaded.lens_units, calibration.lens_units)
    np.testing.assert_allclose(loaded.focus_distance_m, calibration.focus_distance_m)
    assert "lens_units:" in path.read_text() and "focus_distance_m:" in path.read_text()


def test_interpolation_is_linear_in_diopters_and_refuses_extrapolation():
    calibration = FocusCalibration(lens_units=[0.0, 100.0], focus_distance_m=[1.0, 0.25])  # 1 D .. 4 D
    assert calibration.distance_for_units(50.0) == pytest.approx(1.0 / 2.5)
    assert calibration.units_for_distance(0.5) == pytest.approx(100.0 / 3.0)
    np.testing.assert_allclose(calibration.units_for_distance(np.array([1.0, 0.25])), [0.0, 100.0])
    with pytest.raises(FocusCalibrationError, match="outside"):
        calibration.units_for_distance(2.0)
    with pytest.raises(FocusCalibrationError, match="outside"):
        calibration.distance_for_units(101.0)


def test_cli_writes_a_loadable_table(tmp_path, sweeps, capsys):
    root = tmp_path / "calib"
    for distance_m, (units, images) in sweeps.items():
        (root / f"{distance_m}").mkdir(parents=True)
        for unit, image in zip(units, images):
            assert cv2.imwrite(str(root / f"{distance_m}" / f"{int(unit)}.png"), image)
    out = tmp_path / "focus.yaml"
    assert calibrate_focus_cli([str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "residual_diopters" in printed and "rms residual" in printed
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [float(row[0]) for row in rows] == list(TARGET_DISTANCES_M)
    loaded = FocusCalibration.load(out)
    assert abs(1.0 / loaded.distance_for_units(400.0) - true_diopters(400.0)) < LAW_TOLERANCE_DIOPTERS


def test_one_distance_only_is_refused(sweeps):
    with pytest.raises(FocusCalibrationError, match="2 or more"):
        calibrate_focus({0.4: sweeps[0.4]})
    with pytest.raises(FocusCalibrationError, match="at least 2"):
        fit_focus_law([0.4], [200.0])


def test_non_monotone_best_focus_is_refused():
    with pytest.raises(FocusCalibrationError, match="not monotone"):
        fit_focus_law([0.2, 0.5, 1.0], [300.0, 100.0, 200.0])


def test_sweep_that_misses_best_focus_is_refused():
    units, images = render_sweep(0.15, units=np.arange(0.0, 401.0, 40.0))  # best focus at 617 units
    with pytest.raises(FocusCalibrationError, match="end of the sweep"):
        best_focus_units(units, images)
    flat = [np.full((64, 64), 128, np.uint8)] * 5
    with pytest.raises(FocusCalibrationError, match="no focus peak"):
        best_focus_units([0, 1, 2, 3, 4], flat)


def test_unreadable_or_misnamed_files_are_refused(tmp_path):
    sweep = tmp_path / "0.5"
    sweep.mkdir()
    (sweep / "10.png").write_bytes(b"not a png")
    with pytest.raises(FocusCalibrationError, match="unreadable"):
        load_calibration_sweeps(tmp_path)
    (sweep / "10.png").unlink()
    assert cv2.imwrite(str(sweep / "ten.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(FocusCalibrationError, match="not a lens position"):
        load_calibration_sweeps(tmp_path)
    assert calibrate_focus_cli([str(tmp_path / "missing")]) == 1


def test_bad_tables_are_refused(tmp_path):
    with pytest.raises(FocusCalibrationError, match="strictly increasing"):
        FocusCalibration(lens_units=[0.0, 0.0, 10.0], focus_distance_m=[1.0, 0.5, 0.3])
    with pytest.raises(FocusCalibrationError, match="monotone"):
        FocusCalibration(lens_units=[0.0, 5.0, 10.0], focus_distance_m=[1.0, 0.3, 0.5])
    path = tmp_path / "bad.yaml"
    path.write_text("lens_units: [1, 2]\n")
    with pytest.raises(FocusCalibrationError, match="focus_distance_m"):
        FocusCalibration.load(path)
