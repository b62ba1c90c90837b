"""hybriddepth-train end to end on simulated scenes: official-layout checkpoints the backend loads strictly,
resume, a 2-process DDP run on CPU (gloo), the throughput line, and bad input refused."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from support.training import SCENE_SIZE, one_torch_thread, write_relative_weights
import hybriddepth_ros
from hybriddepth_ros.core.data.simulated import SimulatedScenes
from hybriddepth_ros.core.data.synthesis import SweepProtocol, synthesize_stack
from hybriddepth_ros.core.depth.hybriddepth import HybridDepthBackend
from hybriddepth_ros.core.models.weights import read_state_dict
from hybriddepth_ros.core.train.checkpoints import save_checkpoint
from hybriddepth_ros.core.train.trainer import TrainConfig, build_network
from hybriddepth_ros.tools import train

WORKING = SCENE_SIZE


@pytest.fixture(scope="module")
def relative_weights(tmp_path_factory):
    return write_relative_weights(tmp_path_factory.mktemp("weights") / "depth_anything_vits.pth")


def train_args(output_dir, relative_weights, *extra) -> list[str]:
    """3 simulated scenes (2 train, 1 validation), batch 2: one step per epoch, modular mode (no DFV)."""
    return ["--dataset", "simulated", "--scenes", "3", "--scene-size", *map(str, SCENE_SIZE),
            "--relative-weights", relative_weights, "--metric-branch", "focus_measure", "--batch-size", "2",
            "--device", "cpu", "--output-dir", str(output_dir), "--val-fraction", "0.34", "--no-progress", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, relative_weights):
    output_dir = tmp_path_factory.mktemp("trained")
    with one_torch_thread():
        assert train.main(train_args(output_dir, relative_weights, "--epochs", "2")) == 0
    return output_dir


def test_outputs_log_and_curve(trained):
    assert {p.name for p in trained.iterdir()} == {"best.ckpt", "last.ckpt", "training_log.csv", "loss_curve.png"}
    rows = list(csv.DictReader((trained / "training_log.csv").open()))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "1"), ("2", "2")]
    assert all(float(r["val_loss"]) > 0 and float(r["samples_per_s"]) > 0 for r in rows)


def depth_of(checkpoint) -> np.ndarray:
    """The backend's depth of a validation-like scene (NYU-protocol stack) with `checkpoint`."""
    backend = HybridDepthBackend(device="cpu", checkpoint_path=str(checkpoint), metric_branch="focus_measure",
                                 working_size=WORKING)
    stack = synthesize_stack(SimulatedScenes(1, *SCENE_SIZE, first_seed=7)[0], SweepProtocol("paper", 5))
    return backend.estimate(stack).depth_m


def test_checkpoint_has_the_official_layout_loads_strictly_and_changes_the_output(trained, relative_weights, tmp_path):
    state = read_state_dict(trained / "best.ckpt")
    assert all(key.startswith(("model.depth_anything.", "model.ScaleMapLearner.")) for key in state)
    # The frozen relative branch is saved exactly as it was loaded.
    relative = torch.load(relative_weights, weights_only=True)
    assert all(torch.equal(state["model.depth_anything." + k], v) for k, v in relative.items())
    # The weights the run started from, saved the same way: the trained refiner gives other depth.
    with one_torch_thread():
        torch.manual_seed(0)
        start = build_network(TrainConfig(output_dir=str(tmp_path), lr=1, batch_size=1, crop_px=None, flip="none",
                                          relative_weights=relative_weights, metric_branch="focus_measure"))
        save_checkpoint(tmp_path / "start.ckpt", start, {})
        before, after = depth_of(tmp_path / "start.ckpt"), depth_of(trained / "best.ckpt")
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() > 1e-4 * np.abs(before).max()
    with pytest.raises(Exception, match="missing keys"):
        HybridDepthBackend(device="cpu", checkpoint_path=str(trained / "best.ckpt"), working_size=WORKING)  # needs DFV


def test_resume_continues_from_the_saved_step_as_if_never_stopped(trained, relative_weights, tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    with one_torch_thread():
        assert train.main(train_args(first, relative_weights, "--epochs", "1")) == 0
        assert train.main(train_args(resumed, relative_weights, "--epochs", "2", "--resume", str(first / "last.ckpt"))) == 0
    rows = list(csv.DictReader((resumed / "training_log.csv").open()))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "1"), ("2", "2")]
    uninterrupted, continued = read_state_dict(trained / "last.ckpt"), read_state_dict(resumed / "last.ckpt")
    assert continued.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        torch.testing.assert_close(continued[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_two_process_ddp_on_cpu_saves_what_every_replica_holds(relative_weights, tmp_path):
    output_dir = tmp_path / "ddp"
    package_root = str(Path(hybriddepth_ros.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "hybriddepth_ros.tools.train", *train_args(output_dir, relative_weights, "--epochs", "1")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "global batch 2 over 2 process(es)" in result.stderr
    assert f"all 2 processes hold exactly the weights saved in {output_dir / 'last.ckpt'}" in result.stderr
    with one_torch_thread():
        assert np.isfinite(depth_of(output_dir / "best.ckpt")).all()


def test_benchmark_prints_training_throughput(relative_weights, tmp_path, capsys):
    with one_torch_thread():
        assert train.main(train_args(tmp_path / "bench", relative_weights, "--benchmark-steps", "1")) == 0
    line = capsys.readouterr().out.strip()
    print("\n" + line)
    assert line.startswith("training throughput: ") and " samples/s (" in line and "trains refiner" in line
    assert not (tmp_path / "bench").exists()


def test_bad_checkpoint_resume_file_and_dataset_exit_2_naming_the_file(trained, relative_weights, tmp_path, capsys):
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"model.not_a_layer.weight": torch.zeros(2)}}, wrong)
    assert train.main(train_args(tmp_path / "a", relative_weights, "--checkpoint", str(wrong))) == 2
    assert f"{wrong}: does not match HybridDepthNet" in capsys.readouterr().err
    assert train.main(train_args(tmp_path / "b", relative_weights, "--resume", str(trained / "best.ckpt"))) == 2
    assert "best.ckpt: not a resumable training state: no optimizer, progress" in capsys.readouterr().err
    assert train.main(["--dataset", "recordings", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "c")]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")
