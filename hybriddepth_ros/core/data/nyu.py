"""NYU Depth v2 as users have it: the official labeled `.mat`, or per-scene folders of rgb/sync_depth files.

Facts used (where from):
- `nyu_depth_v2_labeled.mat` is a MATLAB v7.3 file, i.e. HDF5 (read with h5py).
  MATLAB stores 480x640x3x1449 column-major, so h5py sees `images` as uint8
  (1449, 3, 640, 480) and `depths` as float32 metres (1449, 640, 480): image i
  is `images[i].transpose(2, 1, 0)`, depth i is `depths[i].T`. (NYU's toolbox
  documentation; the same transposes in the HybridDepth reference's
  dataloader/NYU/labeled.py.)
- The official split is NYU's `splits.mat`: `testNdxs` (654 one-based indices
  into the 1449 labeled images) and `trainNdxs` (the other 795). The test
  indices are stored below as runs; they equal the reference's
  input_splits/test.txt (checked when written).
- The widely used folder layout (BTS's `official_splits/test`, the
  reference's NYU test loader) holds `<scene>/rgb_XXXXX.jpg` and
  `<scene>/sync_depth_XXXXX.png`, 16-bit PNG depth in millimetres (0: none),
  with XXXXX = labeled index - 1 (checked: the reference's nyu_test.txt
  numbers are testNdxs - 1). Its list files have lines
  `scene/rgb_XXXXX.jpg scene/sync_depth_XXXXX.png 518.8579` (the last field,
  the focal length in pixels, is not needed here).
- Evaluation crop: the reference crops each 640x480 pair to its central
  512x384 window before synthesising stacks (dataloader/NYU/labeled.py, "remove
  the borders ... since it can cause problem in focal stack creation"); this
  also removes NYU's white/black frame, which its border cut-off (<= 20 px)
  never exceeds. Other sizes are cropped by the same fraction (0.8).
- Valid pixels: 1 mm < d < 10 m (core/sim/nyu_protocol.py, the paper's rule).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ..sim.nyu_protocol import valid_depth_mask
from .sample import DatasetError, DepthDataset, DepthSample, open_hdf5, require_samples

LABELED_IMAGE_COUNT = 1449
NYU_SIZE_PX = (480, 640)
CENTRE_CROP_FRACTION = 0.8
"""512x384 of 640x480: the reference's evaluation window."""
KINECT_RANGE_M = (0.5, 10.0)
"""Focus range of the fixed-sweep protocol on NYU: about the Kinect's working range (its depth stops near 10 m)."""
MILLIMETRES_PER_METRE = 1000.0

_TEST_RUNS = (
    (1, 2), (9, 9), (14, 18), (21, 21), (28, 43), (46, 47), (56, 57), (59, 63), (76, 79), (84, 91), (117, 119),
    (125, 129), (131, 134), (137, 137), (153, 155), (167, 169), (171, 176), (180, 202), (207, 212), (220, 222),
    (250, 250), (264, 264), (271, 273), (279, 285), (296, 302), (310, 312), (315, 317), (325, 335), (351, 352),
    (355, 364), (384, 390), (395, 397), (411, 414), (430, 435), (441, 448), (462, 466), (469, 477), (508, 513),
    (515, 526), (531, 533), (537, 539), (549, 551), (555, 571), (579, 583), (591, 594), (603, 607), (612, 613),
    (617, 621), (633, 638), (644, 645), (650, 651), (656, 658), (663, 664), (668, 673), (676, 681), (686, 690),
    (693, 694), (697, 699), (706, 713), (717, 718), (724, 728), (731, 734), (743, 744), (759, 787), (800, 804),
    (810, 814), (821, 823), (833, 846), (850, 852), (857, 862), (869, 871), (906, 908), (917, 919), (926, 928),
    (932, 935), (945, 947), (959, 962), (965, 967), (970, 977), (991, 995), (1001, 1004), (1010, 1012),
    (1021, 1023), (1032, 1034), (1038, 1039), (1048, 1049), (1052, 1053), (1057, 1058), (1075, 1084),
    (1088, 1096), (1098, 1104), (1106, 1109), (1117, 1119), (1123, 1131), (1135, 1136), (1144, 1158),
    (1162, 1167), (1170, 1171), (1174, 1176), (1179, 1184), (1192, 1196), (1201, 1212), (1216, 1220),
    (1226, 1230), (1233, 1235), (1247, 1250), (1254, 1265), (1275, 1280), (1285, 1295), (1297, 1299),
    (1302, 1308), (1314, 1315), (1329, 1332), (1335, 1340), (1347, 1349), (1353, 1356), (1364, 1365),
    (1368, 1369), (1384, 1391), (1394, 1401), (1407, 1414), (1421, 1424), (1430, 1433), (1441, 1449),
)
NYU_TEST_INDICES = tuple(i for first, last in _TEST_RUNS for i in range(first, last + 1))
"""The official 654-image test split: one-based indices into the labeled set (NYU's splits.mat, testNdxs)."""
SPLITS = ("test", "train", "all")


def split_indices(split: str) -> tuple[int, ...]:
    """One-based labeled indices of `split`: 'test' (654), 'train' (795) or 'all' (1449)."""
    if split == "test":
        return NYU_TEST_INDICES
    if split == "train":
        test = set(NYU_TEST_INDICES)
        return tuple(i for i in range(1, LABELED_IMAGE_COUNT + 1) if i not in test)
    if split == "all":
        return tuple(range(1, LABELED_IMAGE_COUNT + 1))
    raise ValueError(f"NYU split must be one of {SPLITS}, got '{split}'")


def centre_crop(rgb: np.ndarray, depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central window of CENTRE_CROP_FRACTION of each side (512x384 of 640x480), as the reference evaluates."""
    height, width = depth_m.shape
    crop_h, crop_w = round(height * CENTRE_CROP_FRACTION), round(width * CENTRE_CROP_FRACTION)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    return np.ascontiguousarray(rgb[window]), np.ascontiguousarray(depth_m[window])


def _nyu_sample(name: str, rgb: np.ndarray, depth_m: np.ndarray, crop: bool) -> DepthSample:
    if crop:
        rgb, depth_m = centre_crop(rgb, depth_m)
    depth_m = np.asarray(depth_m, dtype=np.float32)
    valid = valid_depth_mask(depth_m) & np.isfinite(depth_m)
    return DepthSample(name=name, depth_m=np.where(valid, depth_m, np.nan).astype(np.float32), valid_mask=valid, rgb=rgb)


class NyuLabeledMat(DepthDataset):
    """The official `nyu_depth_v2_labeled.mat` (h5py), one split of it, centre-cropped unless `centre_crop=False`.

    A file with fewer than 1449 images can only be read with split='all'
    (the official splits index the full set).
    """

    kind = "nyu-mat"
    fixed_sweep_m = KINECT_RANGE_M

    def __init__(self, path: str | Path, split: str = "test", centre_crop: bool = True) -> None:
        self.path = Path(path)
        self.split = split
        self.centre_crop = centre_crop
        self._file = open_hdf5(self.path, "the NYU Depth v2 labeled .mat",
                               "a MATLAB v7.3 / HDF5 file (the labeled NYU .mat is one)")
        missing = [key for key in ("images", "depths") if key not in self._file]
        if missing:
            raise DatasetError(f"{self.path}: no {' or '.join(repr(k) for k in missing)} dataset "
                               f"(found {sorted(self._file.keys())})")
        self._images, self._depths = self._file["images"], self._file["depths"]
        images, depths = self._images.shape, self._depths.shape
        if len(images) != 4 or images[1] != 3 or len(depths) != 3 or images[0] != depths[0] or images[2:] != depths[1:]:
            raise DatasetError(
                f"{self.path}: 'images' {images} and 'depths' {depths} are not the labeled layout "
                "(N, 3, W, H) and (N, W, H)"
            )
        if self._images.dtype != np.uint8 or not np.issubdtype(self._depths.dtype, np.floating):
            raise DatasetError(
                f"{self.path}: 'images' must be uint8 and 'depths' float metres, got {self._images.dtype} "
                f"and {self._depths.dtype}"
            )
        count = images[0]
        if split != "all" and count != LABELED_IMAGE_COUNT:
            raise DatasetError(
                f"{self.path}: holds {count} images; the official '{split}' split indexes the full "
                f"{LABELED_IMAGE_COUNT} (use split 'all' for a subset file)"
            )
        self.indices = split_indices(split) if split != "all" else tuple(range(1, count + 1))
        require_samples(len(self.indices), str(self.path), f"split '{split}'")

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, index: int) -> DepthSample:
        labeled = self.indices[index]
        rgb = np.ascontiguousarray(self._images[labeled - 1].transpose(2, 1, 0))
        depth_m = np.ascontiguousarray(self._depths[labeled - 1].T)
        return _nyu_sample(f"{labeled:04d}", rgb, depth_m, self.centre_crop)

    def describe(self) -> str:
        return f"NYU Depth v2 labeled {self.path.name}, split '{self.split}': {len(self)} images"


_RGB_NAME = re.compile(r"^rgb_(\d+)\.jpg$")


class NyuSceneFolders(DepthDataset):
    """Per-scene folders of `rgb_XXXXX.jpg` + `sync_depth_XXXXX.png` (16-bit millimetres), e.g. official_splits/test.

    Without `split_file` every pair under `root` is read, sorted by path; with it,
    the pairs it lists (paths relative to `root`). An rgb file without its depth
    file is an error, as is a depth PNG that is not 16-bit or of another size.
    """

    kind = "nyu-folders"
    fixed_sweep_m = KINECT_RANGE_M

    def __init__(self, root: str | Path, split_file: str | Path | None = None, centre_crop: bool = True) -> None:
        self.root = Path(root)
        self.centre_crop = centre_crop
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such folder (NYU per-scene folders of rgb_*.jpg + sync_depth_*.png)")
        self.pairs = self._listed_pairs(Path(split_file)) if split_file else self._found_pairs()
        require_samples(len(self.pairs), str(split_file or self.root), "no rgb_*.jpg with sync_depth_*.png")

    def _found_pairs(self) -> list[tuple[Path, Path]]:
        pairs = []
        for rgb_path in sorted(self.root.rglob("rgb_*.jpg")):
            match = _RGB_NAME.match(rgb_path.name)
            if not match:
                continue
            depth_path = rgb_path.with_name(f"sync_depth_{match.group(1)}.png")
            if not depth_path.is_file():
                raise DatasetError(f"{depth_path}: missing (the depth of {rgb_path.name})")
            pairs.append((rgb_path, depth_path))
        return pairs

    def _listed_pairs(self, split_file: Path) -> list[tuple[Path, Path]]:
        try:
            lines = split_file.read_text().splitlines()
        except OSError as exc:
            raise DatasetError(f"{split_file}: cannot read the split list: {exc.strerror}") from None
        pairs = []
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DatasetError(f"{split_file}:{number}: expected 'rgb_path depth_path [focal]', got '{line}'")
            rgb_path, depth_path = (self.root / field.lstrip("/") for field in fields[:2])
            for path in (rgb_path, depth_path):
                if not path.is_file():
                    raise DatasetError(f"{path}: missing (listed in {split_file}:{number})")
            pairs.append((rgb_path, depth_path))
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def labeled_indices(self) -> list[int | None]:
        """One-based labeled index of each sample from its file number (official_splits numbering), None if absent."""
        numbers = [_RGB_NAME.match(rgb.name) for rgb, _ in self.pairs]
        return [int(m.group(1)) + 1 if m else None for m in numbers]

    def is_official_test_split(self) -> bool:
        return sorted(self.labeled_indices()) == list(NYU_TEST_INDICES)

    def sample(self, index: int) -> DepthSample:
        rgb_path, depth_path = self.pairs[index]
        bgr = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{rgb_path}: unreadable image file")
        depth_mm = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
        if depth_mm is None:
            raise DatasetError(f"{depth_path}: unreadable image file")
        if depth_mm.dtype != np.uint16 or depth_mm.ndim != 2:
            raise DatasetError(
                f"{depth_path}: expected a 16-bit single-channel PNG in millimetres, got {depth_mm.dtype} "
                f"with shape {depth_mm.shape}"
            )
        if depth_mm.shape != bgr.shape[:2]:
            raise DatasetError(
                f"{depth_path}: depth is {depth_mm.shape[1]}x{depth_mm.shape[0]} but {rgb_path.name} is "
                f"{bgr.shape[1]}x{bgr.shape[0]}"
            )
        depth_m = np.where(depth_mm > 0, depth_mm / MILLIMETRES_PER_METRE, np.nan).astype(np.float32)
        name = str(rgb_path.relative_to(self.root).with_suffix(""))
        return _nyu_sample(name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth_m, self.centre_crop)

    def describe(self) -> str:
        official = ", the official 654-image test split" if self.is_official_test_split() else ""
        return f"NYU Depth v2 folders {self.root}: {len(self)} images{official}"
