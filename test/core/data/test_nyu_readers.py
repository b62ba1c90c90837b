"""NYU Depth v2 readers on tiny files made here: the labeled .mat (h5py layout) and per-scene folders."""

import cv2
import h5py
import numpy as np
import pytest

from hybriddepth_ros.core.data import DatasetError, detect_kind, open_dataset
from hybriddepth_ros.core.data.nyu import LABELED_IMAGE_COUNT, NYU_TEST_INDICES, centre_crop, split_indices

HEIGHT, WIDTH = 10, 12  # centre crop (0.8): 8 x 10, rows 1..8, columns 1..10


def labeled_image(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 and (H, W) metres that encode the zero-based labeled index and the pixel position."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([rows * 20 + ch for ch in range(3)], axis=-1).astype(np.uint8)
    rgb[..., 2] = cols * 20
    rgb[0, 0, 0] = index % 256  # a corner the crop removes; index checked through the depth below
    depth_m = (1.0 + index / 1000.0 + 0.01 * rows + 0.001 * cols).astype(np.float32)
    depth_m[2, 3] = 0.0  # no depth
    depth_m[4, 5] = 12.0  # beyond 10 m: not valid under the protocol
    return rgb, depth_m


@pytest.fixture(scope="module")
def labeled_mat(tmp_path_factory):
    """A labeled-layout file: images (N, 3, W, H) uint8, depths (N, W, H) float32, as MATLAB v7.3 stores them."""
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (LABELED_IMAGE_COUNT, 3, WIDTH, HEIGHT), dtype=np.uint8)
        depths = f.create_dataset("depths", (LABELED_IMAGE_COUNT, WIDTH, HEIGHT), dtype=np.float32)
        for index in range(LABELED_IMAGE_COUNT):
            rgb, depth_m = labeled_image(index)
            images[index] = rgb.transpose(2, 1, 0)
            depths[index] = depth_m.T
    return path


def test_official_test_split_is_654_images_and_train_the_other_795():
    assert len(NYU_TEST_INDICES) == 654 and len(set(NYU_TEST_INDICES)) == 654
    assert NYU_TEST_INDICES[:5] == (1, 2, 9, 14, 15) and NYU_TEST_INDICES[-1] == 1449
    assert len(split_indices("train")) == 795
    assert set(split_indices("train")) | set(NYU_TEST_INDICES) == set(range(1, 1450))


def test_labeled_mat_yields_the_test_split_transposed_and_cropped(labeled_mat):
    dataset = open_dataset(None, labeled_mat)
    assert detect_kind(labeled_mat) == "nyu-mat" and len(dataset) == 654
    for position, labeled in ((0, 1), (2, 9), (653, 1449)):
        sample = dataset[position]
        rgb, depth_m = labeled_image(labeled - 1)
        expected_rgb, expected_depth = centre_crop(rgb, depth_m)
        assert sample.name == f"{labeled:04d}" and sample.rgb.shape == (8, 10, 3) and sample.stack is None
        np.testing.assert_array_equal(sample.rgb, expected_rgb)
        valid = (expected_depth > 0.001) & (expected_depth < 10.0)
        np.testing.assert_array_equal(sample.valid_mask, valid)
        np.testing.assert_allclose(sample.depth_m[valid], expected_depth[valid])
        assert np.isnan(sample.depth_m[~valid]).all() and (~valid).sum() == 2
    full = open_dataset("nyu-mat", labeled_mat, split="train", centre_crop=False)
    assert len(full) == 795 and full[0].rgb.shape == (HEIGHT, WIDTH, 3) and full[0].name == "0003"


def test_subset_mat_needs_split_all_and_bad_files_are_named(tmp_path, labeled_mat):
    small = tmp_path / "small.mat"
    with h5py.File(small, "w") as f:
        f.create_dataset("images", (3, 3, WIDTH, HEIGHT), dtype=np.uint8)
        f.create_dataset("depths", (3, WIDTH, HEIGHT), dtype=np.float32)
    with pytest.raises(DatasetError, match="small.mat: holds 3 images"):
        open_dataset("nyu-mat", small)
    assert len(open_dataset("nyu-mat", small, split="all")) == 3
    wrong = tmp_path / "wrong.mat"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("images", (3, WIDTH, HEIGHT), dtype=np.uint8)
        f.create_dataset("depths", (3, WIDTH, HEIGHT), dtype=np.float32)
    with pytest.raises(DatasetError, match="wrong.mat: 'images'"):
        open_dataset("nyu-mat", wrong, split="all")
    text = tmp_path / "text.mat"
    text.write_text("MATLAB 5.0 MAT-file")
    with pytest.raises(DatasetError, match="text.mat: not a MATLAB v7.3"):
        open_dataset("nyu-mat", text)


def write_scene_pair(folder, number: int, depth_mm: np.ndarray, rgb: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"rgb_{number:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(folder / f"sync_depth_{number:05d}.png"), depth_mm)


def test_scene_folders_yield_every_pair_in_metres(tmp_path):
    rgb = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    depth_mm = np.full((HEIGHT, WIDTH), 2500, np.uint16)
    depth_mm[3, 4] = 0
    write_scene_pair(tmp_path / "bathroom", 45, depth_mm, rgb)
    write_scene_pair(tmp_path / "bathroom", 46, depth_mm * 2, rgb)
    write_scene_pair(tmp_path / "kitchen", 507, depth_mm, rgb)
    dataset = open_dataset(None, tmp_path, centre_crop=False)
    assert detect_kind(tmp_path) == "nyu-folders"
    assert [dataset[i].name for i in range(len(dataset))] == ["bathroom/rgb_00045", "bathroom/rgb_00046", "kitchen/rgb_00507"]
    assert dataset.labeled_indices() == [46, 47, 508] and not dataset.is_official_test_split()
    second = dataset[1]
    assert second.depth_m[0, 0] == pytest.approx(5.0) and np.isnan(second.depth_m[3, 4]) and not second.valid_mask[3, 4]
    assert second.valid_mask.sum() == HEIGHT * WIDTH - 1
    listed = tmp_path / "test_files.txt"
    listed.write_text("/kitchen/rgb_00507.jpg /kitchen/sync_depth_00507.png 518.8579\n")
    only = open_dataset("nyu-folders", tmp_path, split_file=listed)
    assert len(only) == 1 and only[0].name == "kitchen/rgb_00507" and only[0].rgb.shape == (8, 10, 3)


def test_scene_folders_refuse_wrong_units_sizes_and_missing_files(tmp_path):
    rgb = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    write_scene_pair(tmp_path / "a", 1, np.full((HEIGHT, WIDTH), 90, np.uint8), rgb)  # 8-bit: not millimetres
    with pytest.raises(DatasetError, match="sync_depth_00001.png: expected a 16-bit"):
        open_dataset("nyu-folders", tmp_path)[0]
    write_scene_pair(tmp_path / "a", 1, np.full((HEIGHT + 2, WIDTH), 900, np.uint16), rgb)
    with pytest.raises(DatasetError, match=r"sync_depth_00001.png: depth is 12x12 but rgb_00001.jpg is 12x10"):
        open_dataset("nyu-folders", tmp_path)[0]
    (tmp_path / "a" / "sync_depth_00001.png").unlink()
    with pytest.raises(DatasetError, match="sync_depth_00001.png: missing"):
        open_dataset("nyu-folders", tmp_path)
    with pytest.raises(DatasetError, match="no samples"):
        open_dataset("nyu-folders", tmp_path / "a" / "..", split_file=_empty(tmp_path))


def _empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n")
    return path
