"""Recording folders: written by write_recording_sample, read back as samples; bad ground truth named."""

import numpy as np
import pytest

from support.stacks import DISTANCES_M, textured_stack
from hybriddepth_ros.core.capture.directory import DirectoryCapture
from hybriddepth_ros.core.data import DatasetError, detect_kind, open_dataset
from hybriddepth_ros.core.data.recordings import GROUND_TRUTH_FILE, depth_to_stack_size, write_recording_sample

HEIGHT, WIDTH = 24, 32


def depth_map(offset_m: float) -> np.ndarray:
    depth = np.linspace(0.5, 3.0, HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH) + offset_m
    depth[0, :4] = np.nan
    return depth


def test_written_samples_read_back_exactly(tmp_path):
    stacks = [textured_stack(HEIGHT, WIDTH, seed=s, registered=False, stamp_s=100.0 + s) for s in range(2)]
    for index, stack in enumerate(stacks):
        write_recording_sample(tmp_path, f"stack_{index}", stack, depth_map(index), {"depth_topic": "camera/depth"})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no partial folder left"
    dataset = open_dataset(None, tmp_path)
    assert detect_kind(tmp_path) == "recordings" and len(dataset) == 2 and dataset.has_stacks
    for index, stack in enumerate(stacks):
        sample = dataset[index]
        assert sample.name == f"stack_{index}"
        np.testing.assert_array_equal(sample.stack.frames, stack.frames)
        np.testing.assert_allclose(sample.stack.focus_distances_m, DISTANCES_M, rtol=1e-6)
        assert sample.stack.intrinsics == stack.intrinsics and not sample.stack.registered
        assert sample.stack.stamp_s == 100.0 + index
        np.testing.assert_array_equal(sample.depth_m, depth_map(index))
        assert sample.valid_mask.sum() == HEIGHT * WIDTH - 4
    capped = open_dataset("recordings", tmp_path, max_depth_m=2.0)
    assert capped[0].valid_mask.sum() < dataset[0].valid_mask.sum()
    # The folder stays a stack folder the directory backend replays as it is.
    assert DirectoryCapture(tmp_path).capture_stack().num_frames == len(DISTANCES_M)


def test_depth_of_another_resolution_is_rescaled_only_at_the_same_aspect_ratio():
    half = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)
    assert depth_to_stack_size(half, HEIGHT, WIDTH, "x").shape == (HEIGHT, WIDTH)
    with pytest.raises(DatasetError, match="x: depth is 16x16 but the focal stack is 32x24"):
        depth_to_stack_size(np.ones((16, 16)), HEIGHT, WIDTH, "x")


@pytest.mark.parametrize(
    "ground_truth, message",
    [
        (np.full((HEIGHT, WIDTH), 1500, np.uint16), "depth is uint16; save float32 metres"),
        (np.full((HEIGHT, WIDTH), 1500.0, np.float32), "median depth 1500.0 is not plausible in metres"),
        (np.ones((HEIGHT - 1, WIDTH), np.float32), r"depth is \(23, 32\) but the frames are \(24, 32\)"),
    ],
)
def test_bad_ground_truth_is_refused_naming_the_file(tmp_path, ground_truth, message):
    write_recording_sample(tmp_path, "one", textured_stack(HEIGHT, WIDTH), depth_map(0.0))
    np.save(tmp_path / "one" / GROUND_TRUTH_FILE, ground_truth)
    with pytest.raises(DatasetError, match=f"{GROUND_TRUTH_FILE}: {message}"):
        open_dataset("recordings", tmp_path)[0]


def test_missing_ground_truth_and_empty_folders_are_errors(tmp_path):
    write_recording_sample(tmp_path, "one", textured_stack(HEIGHT, WIDTH), depth_map(0.0))
    (tmp_path / "one" / GROUND_TRUTH_FILE).unlink()
    with pytest.raises(DatasetError, match=f"one/{GROUND_TRUTH_FILE}: missing"):
        open_dataset("recordings", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        open_dataset("recordings", tmp_path / "empty")
