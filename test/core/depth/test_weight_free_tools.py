"""The weight-free benchmark mode, the accuracy table and the real-stack figure, on small inputs."""

import cv2
import numpy as np
import pytest

from support import PIXEL_STACK


def test_weight_free_benchmark_times_every_stage_of_an_unregistered_stack():
    from hybriddepth_ros.tools.benchmark import (
        END_TO_END, WEIGHT_FREE_STAGES, cpu_description, format_weight_free_report, run_weight_free_benchmark,
    )

    report = run_weight_free_benchmark(device="cpu", frames=4, height_px=96, width_px=128, repeats=2)
    for stage in (*WEIGHT_FREE_STAGES, END_TO_END):
        assert report.cold_s[stage] >= 0 and report.warm_median_s[stage] >= 0, stage
    assert report.cold_s[END_TO_END] >= sum(report.cold_s[s] for s in WEIGHT_FREE_STAGES)
    text = format_weight_free_report(report, "synthetic")
    assert "registration" in text and "densify" in text and "load average" in text
    assert cpu_description() in text, "timings name the CPU they were taken on"


def test_cpu_description_names_family_and_model_of_the_first_processor(tmp_path):
    from hybriddepth_ros.tools.benchmark import cpu_description

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                       "model name\t: AMD EPYC\nflags\t\t: fpu avx2\n\nprocessor\t: 1\ncpu family\t: 23\n")
    assert cpu_description(str(cpuinfo)) == "AMD EPYC, family 25 model 17"
    assert cpu_description(str(tmp_path / "missing"))  # another OS: still names something


def test_evaluation_table_on_one_small_scene(tmp_path):
    from hybriddepth_ros.tools.evaluate_weight_free import evaluate, format_table

    rows = evaluate("sim", 5, [1000], 96, 128, tmp_path, compare=True)
    assert set(rows) == {"dense", "nearest_fill", "guided_push_pull"}
    dense = rows["dense"][0]
    assert dense["coverage"] == 1.0 and 0 < dense["abs_rel"] < 1 and dense["measured_abs_rel"] < dense["abs_rel"]
    assert list(tmp_path.glob("sim_1000_5_96x128.npz")), "rendered stacks are cached"
    assert "dense" in format_table({("sim", 5): rows}, [1000])


def test_photo_kinds_render_a_photo_over_a_smooth_depth_field_and_read_it(tmp_path):
    """The `photo` kind's stacks: the NYU protocol over a seeded smooth depth field, on a crop of the given
    photo (here a procedural scene's colours saved as a PNG). A smooth field is what blur equalisation reads
    best: dense AbsRel under 0.05 (measured when written: 0.0120 at 96x128)."""
    from hybriddepth_ros.core.sim.scene import make_scene
    from hybriddepth_ros.tools.evaluate_weight_free import (
        PHOTO_NEAR_M,
        PHOTOFIT_FIELD,
        evaluate,
        main,
        photo_depth_m,
    )

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(make_scene(7, 240, 320).rgb, cv2.COLOR_RGB2BGR))
    depth_m = photo_depth_m(1000, 96, 128)
    assert np.array_equal(depth_m, photo_depth_m(1000, 96, 128))
    assert PHOTO_NEAR_M[0] <= depth_m.min() <= PHOTO_NEAR_M[1] and 1.5 * depth_m.min() <= depth_m.max() <= 10.0 + 1e-3
    assert np.abs(np.diff(1.0 / depth_m, axis=1)).max() < 0.05 * (1.0 / depth_m.min() - 1.0 / depth_m.max())
    rows = evaluate("photo", 5, [1000], 96, 128, tmp_path, compare=False, photo=photo)
    assert rows["dense"][0]["coverage"] == 1.0 and rows["dense"][0]["abs_rel"] < 0.05
    assert list(tmp_path.glob("photo-photo_1000_5_96x128.npz")), "rendered stacks are cached"
    # photofit: the camera's disc lens and defaults, on nearer fields (measured when written: 0.0259).
    rows = evaluate("photofit", 5, [1000], 96, 128, tmp_path, compare=False, photo=photo)
    assert rows["dense"][0]["coverage"] == 1.0 and rows["dense"][0]["abs_rel"] < 0.05
    nearer_m = photo_depth_m(1000, 96, 128, **PHOTOFIT_FIELD)
    nearest_m = PHOTOFIT_FIELD["near_m"]
    assert nearest_m[0] <= nearer_m.min() <= nearest_m[1] and nearer_m.max() <= 5.0 + 1e-3
    with pytest.raises(SystemExit):
        main(["--kinds", "photo", "--seeds", "1000", "--frames", "5"])


@pytest.mark.skipif(not PIXEL_STACK.is_dir(), reason="../shared/data/pixel6pro_stack not present")
def test_real_stack_figure_on_the_pixel_stack(tmp_path, capsys):
    from hybriddepth_ros.tools.real_stack_figure import main

    out = tmp_path / "pixel.png"
    assert main([str(PIXEL_STACK), "--out", str(out), "--width", "320", "--height", "240"]) == 0
    text = capsys.readouterr().out
    coverage = float(text.split("coverage of registered pixels: ")[1].split()[0])
    inside = float(text.split("inside the sweep range: ")[1].split()[0])
    assert coverage >= 0.95 and inside >= 0.99, text
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > 3 * 320
