"""The training loop on the CPU: overfits a handful of samples, splits batches over processes, stops on NaN."""

import numpy as np
import pytest

from support.training import SCENE_SIZE, one_torch_thread, write_relative_weights
from hybriddepth_ros.core.data.sample import Subset
from hybriddepth_ros.core.data.simulated import SimulatedScenes
from hybriddepth_ros.core.data.synthesis import SweepProtocol
from hybriddepth_ros.core.train.trainer import Distributed, NonFiniteLossError, TrainConfig, Trainer


@pytest.fixture(scope="module")
def relative_weights(tmp_path_factory):
    return write_relative_weights(tmp_path_factory.mktemp("weights") / "depth_anything_vits.pth")


@pytest.fixture(scope="module")
def scenes():
    return SimulatedScenes(3, *SCENE_SIZE)


def trainer(tmp_path, relative_weights, scenes, **overrides) -> Trainer:
    options = dict(output_dir=str(tmp_path), lr=3e-4, batch_size=2, crop_px=None, flip="none",
                   sweep=SweepProtocol("paper", 5), relative_weights=relative_weights, metric_branch="focus_measure",
                   device="cpu", progress=False)
    options.update(overrides)
    return Trainer(TrainConfig(**options), Subset(scenes, [0, 1]), Subset(scenes, [2]), log=lambda *a: None)


def test_loss_decreases_when_overfitting_two_samples(tmp_path, relative_weights, scenes):
    with one_torch_thread():
        run = trainer(tmp_path, relative_weights, scenes)
        assert run.caches, "frozen branches are computed once per sample under the NYU recipe (no augmentation)"
        run._set_modes(training=True)
        losses = [run.train_step([0, 1], 0, step)["loss"] for step in range(10)]
    print("\noverfitting losses:", [round(v, 3) for v in losses])
    assert np.mean(losses[-3:]) < 0.8 * losses[0]


def test_batches_are_the_same_samples_whatever_the_process_count(tmp_path, relative_weights, scenes):
    config = TrainConfig(output_dir=str(tmp_path), lr=1e-4, batch_size=4, crop_px=None, flip="none",
                         sweep=SweepProtocol("paper", 5), relative_weights=relative_weights,
                         metric_branch="focus_measure", device="cpu")
    dataset = SimulatedScenes(10, *SCENE_SIZE)
    per_rank = []
    for rank in range(2):
        run = Trainer.__new__(Trainer)  # only the batch plan is needed: no network
        run.config, run.train_set, run.dist = config, dataset, Distributed(rank, 2, rank)
        per_rank.append(run.epoch_batches(epoch=3))
    single = Trainer.__new__(Trainer)
    single.config, single.train_set, single.dist = config, dataset, Distributed()
    whole = single.epoch_batches(epoch=3)
    assert len(whole) == 3 and all(len(b) == 4 for b in whole)  # 10 samples: the last batch filled from the start
    assert sorted(sum(whole, [])[:10]) == list(range(10))
    for step, batch in enumerate(whole):
        assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(batch) and len(per_rank[0][step]) == 2


def test_non_finite_loss_stops_naming_step_and_batch(tmp_path, relative_weights, scenes):
    with one_torch_thread():
        run = trainer(tmp_path, relative_weights, scenes, lr=1e30, batch_size=1, epochs=1)
        with pytest.raises(NonFiniteLossError, match=r"at step 2 \(epoch 1, batch 2 of the epoch\): loss nan on samples \['scene_000"):
            run.run()
    assert not (tmp_path / "last.ckpt").exists() and not (tmp_path / "best.ckpt").exists()


def test_options_that_cannot_train_are_refused(tmp_path, relative_weights):
    base = dict(output_dir=str(tmp_path), lr=1e-4, batch_size=2, crop_px=None, flip="none")
    with pytest.raises(ValueError, match="'dfv' cannot train: the metric branch is the weight-free"):
        TrainConfig(**base, metric_branch="focus_measure", train_parts=("refiner", "dfv"))
    with pytest.raises(ValueError, match="train parts must be some of"):
        TrainConfig(**base, train_parts=("decoder",))
