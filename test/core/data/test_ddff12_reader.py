"""DDFF12 reader on a tiny h5 in DFV's layout: frames, focus positions and ground truth in metres, disparity scoring."""

import h5py
import numpy as np
import pytest

from hybriddepth_ros.core.data import DatasetError, detect_kind, open_dataset
from hybriddepth_ros.core.data.ddff12 import DISPARITY_TIMES_DEPTH_M, FRAME_DISPARITIES, frame_subset

STACKS, FRAMES, HEIGHT, WIDTH = 2, 10, 12, 16


@pytest.fixture(scope="module")
def ddff_h5(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("ddff") / "my_ddff_trainVal.h5"
    disparity = rng.uniform(0.01, 0.3, (STACKS, HEIGHT, WIDTH)).astype(np.float32)
    disparity[:, 0, 0] = 0.0  # unknown
    with h5py.File(path, "w") as f:
        # As DFV's pack_to_h5.py writes them: float datasets, frame k focused at linspace(0.28, 0.02, 10)[k].
        stacks = np.stack([np.full((HEIGHT, WIDTH, 3), 20.0 * k + s, np.float32) for s in range(STACKS) for k in range(FRAMES)])
        f.create_dataset("stack_val", data=stacks.reshape(STACKS, FRAMES, HEIGHT, WIDTH, 3))
        f.create_dataset("disp_val", data=disparity)
        f.create_dataset("AiF_val", data=np.zeros((STACKS, HEIGHT, WIDTH, 3), np.float32))
    return path, disparity


def test_frame_subset_is_dfvs_truncated_linspace():
    assert frame_subset(5).tolist() == [0, 2, 4, 6, 9]
    assert frame_subset(10).tolist() == list(range(10))
    with pytest.raises(ValueError):
        frame_subset(11)


def test_samples_in_metres_scored_on_disparity(ddff_h5):
    path, disparity = ddff_h5
    dataset = open_dataset(None, path, stack_size=5)
    assert detect_kind(path) == "ddff12" and len(dataset) == STACKS and dataset.has_stacks
    sample = dataset[1]
    frames = [0, 2, 4, 6, 9]
    assert sample.name == "val_0001" and sample.rgb is None
    assert sample.stack.frames.dtype == np.uint8 and sample.stack.frames.shape == (5, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(sample.stack.frames[:, 0, 0, 0], [20 * k + 1 for k in frames])
    # Focus positions: near to far in metres, disparity * depth = 0.1412 m.
    np.testing.assert_allclose(sample.stack.focus_distances_m, DISPARITY_TIMES_DEPTH_M / FRAME_DISPARITIES[frames])
    assert np.all(np.diff(sample.stack.focus_distances_m) > 0) and sample.stack.focus_distances_m[0] == pytest.approx(0.5044, abs=1e-4)
    sample.stack.validate()
    expected_valid = (disparity[1] > 0.02) & (disparity[1] < 0.28)
    np.testing.assert_array_equal(sample.valid_mask, expected_valid)
    assert np.isnan(sample.depth_m[0, 0])
    # The dataset scores on disparity: its space maps the metric ground truth back exactly.
    back = dataset.space.from_metres(sample.depth_m)
    np.testing.assert_allclose(back[expected_valid], disparity[1][expected_valid], rtol=1e-6)


def test_missing_disparity_and_wrong_layout_are_named(tmp_path):
    test_only = tmp_path / "ddff-dataset-test.h5"
    with h5py.File(test_only, "w") as f:
        f.create_dataset("stack_test", (1, FRAMES, HEIGHT, WIDTH, 3), dtype=np.float32)
    with pytest.raises(DatasetError, match="ddff-dataset-test.h5: no 'stack_val' or 'disp_val'.*cannot be scored"):
        open_dataset("ddff12", test_only)
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("stack_val", (1, FRAMES, HEIGHT, WIDTH, 3), dtype=np.float32)
        f.create_dataset("disp_val", (1, HEIGHT + 1, WIDTH), dtype=np.float32)
    with pytest.raises(DatasetError, match="wrong.h5: 'stack_val'"):
        open_dataset("ddff12", wrong)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("stack_val", (0, FRAMES, HEIGHT, WIDTH, 3), dtype=np.float32)
        f.create_dataset("disp_val", (0, HEIGHT, WIDTH), dtype=np.float32)
    with pytest.raises(DatasetError, match="empty.h5: no samples"):
        open_dataset("ddff12", empty)
