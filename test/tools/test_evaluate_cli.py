"""hybriddepth-eval: the numbers equal running the backend directly; reports written; bad input refused cleanly."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from support.golden_fill import filled_state_dict
from hybriddepth_ros.core.depth.focus_measure import NYU_PROTOCOL_SETTINGS
from hybriddepth_ros.core.depth.fusion import DepthFusion
from hybriddepth_ros.core.depth.registry import create_depth_backend
from hybriddepth_ros.core.eval.metrics import ERROR_METRICS, depth_metrics
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet
from hybriddepth_ros.core.sim.nyu_protocol import nyu_focus_distances_m, render_nyu_focal_stack
from hybriddepth_ros.core.sim.scene import make_scene
from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.stack.focal_stack import FocalStack, diopter_sweep
from hybriddepth_ros.tools import evaluate

HEIGHT, WIDTH, SCENES, FRAMES = 48, 64, 2, 5


def direct_metrics(sweep: str, options: dict) -> dict:
    """The same evaluation written out by hand: scene -> NYU-protocol stack -> DepthFusion -> metrics, mean."""
    fusion = DepthFusion(create_depth_backend("focus_measure", "cpu", **options))
    per_scene = []
    for seed in range(SCENES):
        scene = make_scene(seed, HEIGHT, WIDTH)
        distances = nyu_focus_distances_m(scene.depth_m, FRAMES) if sweep == "paper" else diopter_sweep(0.3, 5.0, FRAMES)
        frames = render_nyu_focal_stack(scene.rgb, scene.depth_m, distances).round().clamp(0, 255).to(torch.uint8).numpy()
        intrinsics = CameraIntrinsics(fx=64.0, fy=64.0, cx=31.5, cy=23.5, width=WIDTH, height=HEIGHT)
        depth = fusion.process(FocalStack(frames, np.asarray(distances), intrinsics)).depth_m
        per_scene.append(depth_metrics(depth, scene.depth_m))
    return {key: float(np.mean([m[key] for m in per_scene])) for key in ("abs_rel", "rmse_m", "delta1", "coverage")}


@pytest.mark.parametrize("settings, options", [
    ("auto", NYU_PROTOCOL_SETTINGS),  # the stacks are the NYU protocol's renders
    ("camera", {}),
])
def test_eval_on_simulated_scenes_equals_the_backend_called_directly(tmp_path, capsys, settings, options):
    out = tmp_path / "report"
    status = evaluate.main([
        "--dataset", "simulated", "--scenes", str(SCENES), "--scene-size", str(HEIGHT), str(WIDTH),
        "--backend", "focus_measure", "--device", "cpu", "--output-dir", str(out), "--panels", "1", "--no-progress",
        "--weight-free-settings", settings,
    ])
    assert status == 0
    table = capsys.readouterr().out
    assert "| focus_measure | paper | 2/2 |" in table and "| focus_measure | fixed | 2/2 |" in table
    summary = json.loads((out / "summary.json").read_text())["summary"]
    for sweep in ("paper", "fixed"):
        expected = direct_metrics(sweep, options)
        got = summary[sweep]
        assert got["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-6)
        assert got["rmse"] == pytest.approx(expected["rmse_m"], rel=1e-6)
        assert got["delta1"] == pytest.approx(expected["delta1"], rel=1e-6)
        assert got["coverage"] == pytest.approx(expected["coverage"], rel=1e-6)
        assert f"{got['abs_rel']:.4f}" in table
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert [(r["sample"], r["protocol"]) for r in rows] == [
        ("scene_0000", "paper"), ("scene_0000", "fixed"), ("scene_0001", "paper"), ("scene_0001", "fixed")]
    assert set(ERROR_METRICS) <= set(rows[0]) and len(rows[0]["focus_distances_m"].split()) == FRAMES
    panels = sorted(p.name for p in (out / "panels").iterdir())
    assert panels == ["scene_0001_fixed.png", "scene_0001_paper.png"]
    assert cv2.imread(str(out / "panels" / panels[0])).shape[1] > 4 * WIDTH


@pytest.fixture(scope="module")
def nyu_folder(tmp_path_factory):
    """A synthetic NYU-layout folder: simulator scenes saved as rgb_*.jpg + 16-bit sync_depth_*.png (mm)."""
    root = tmp_path_factory.mktemp("nyu") / "official_splits" / "test"
    for number in range(2):
        scene = make_scene(10 + number, HEIGHT, WIDTH)
        folder = root / "simulated_room"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"rgb_{number:05d}.jpg"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(folder / f"sync_depth_{number:05d}.png"), np.round(scene.depth_m * 1000).astype(np.uint16))
    return root


@pytest.fixture(scope="module")
def filled_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "filled.ckpt"
    state = filled_state_dict(HybridDepthNet(), "model.")
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}}, path)
    return path


def test_hybriddepth_checkpoint_on_nyu_folders_scores_the_networks_depth(tmp_path, nyu_folder, filled_checkpoint, capsys):
    out = tmp_path / "report"
    status = evaluate.main([
        str(nyu_folder), "--backend", "hybriddepth", "--checkpoint", str(filled_checkpoint), "--device", "cpu",
        "--working-size", "64", "96", "--sweep", "paper", "--confidence-threshold", "0", "--limit", "1",
        "--min-depth-m", "0.001", "--max-depth-m", "1000",
        "--output-dir", str(out), "--panels", "0", "--no-progress",
    ])
    assert status == 0
    assert "| hybriddepth | paper | 1/1 |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert "NYU Depth v2 folders" in summary["dataset"] and summary["backend"] == "hybriddepth"
    # Golden-filled weights are no trained network: only that every valid pixel got a depth is checked.
    assert summary["summary"]["paper"]["coverage"] == pytest.approx(1.0)
    assert summary["settings"]["checkpoint"] == str(filled_checkpoint)


def test_wrong_checkpoint_and_bad_dataset_exit_2_naming_the_file_and_write_nothing(tmp_path, nyu_folder, capsys):
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"model.not_a_layer.weight": torch.zeros(3)}}, wrong)
    out = tmp_path / "report"
    assert evaluate.main([str(nyu_folder), "--backend", "hybriddepth", "--checkpoint", str(wrong),
                          "--device", "cpu", "--output-dir", str(out)]) == 2
    assert f"{wrong}: does not match HybridDepthNet" in capsys.readouterr().err
    broken = tmp_path / "broken" / "scene"
    broken.mkdir(parents=True)
    cv2.imwrite(str(broken / "rgb_00001.jpg"), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    cv2.imwrite(str(broken / "sync_depth_00001.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    assert evaluate.main([str(tmp_path / "broken"), "--output-dir", str(out), "--no-progress"]) == 2
    assert "sync_depth_00001.png: expected a 16-bit" in capsys.readouterr().err
    assert not out.exists()
    assert evaluate.main([str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err
