"""Directory replay backend: folders of images named <anything>_<focus metres>.<ext>."""

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hybriddepth_ros.core.stack.camera import CameraIntrinsics
from hybriddepth_ros.core.capture.base import CaptureError
from hybriddepth_ros.core.capture.directory import DirectoryCapture
from hybriddepth_ros.core.stack.focal_stack import MAX_FRAMES
from hybriddepth_ros.core.depth.focus_measure import FocusMeasureBackend
from hybriddepth_ros.core.depth.fusion import DepthFusion
from support import PIXEL_STACK
from support.stacks import textured_image

HEIGHT, WIDTH = 60, 80


def write_frame(path: Path, level: int, height: int = HEIGHT, width: int = WIDTH) -> None:
    """A frame whose grey level identifies it after sorting (BGR on disk, equal channels)."""
    assert cv2.imwrite(str(path), np.full((height, width, 3), level, dtype=np.uint8))


def write_stack(folder: Path, names_levels) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, level in names_levels:
        write_frame(folder / name, level)
    return folder


def test_replays_one_stack_sorted_by_focus_distance(tmp_path):
    write_stack(tmp_path, [("image_1_0.80.png", 80), ("image_2_0.5.png", 50), ("image_3_1.2.png", 120)])
    (tmp_path / "notes.txt").write_text("not an image")
    capture = DirectoryCapture(tmp_path, horizontal_fov_deg=90.0)
    before_s = time.time()
    stack = capture.capture_stack()
    np.testing.assert_allclose(stack.focus_distances_m, [0.5, 0.8, 1.2])
    assert [int(frame[0, 0, 0]) for frame in stack.frames] == [50, 80, 120]
    assert stack.frames.shape == (3, HEIGHT, WIDTH, 3) and stack.frames.dtype == np.uint8
    assert stack.reference_index == 0 and stack.registered is False
    assert before_s <= stack.stamp_s <= time.time()
    assert stack.intrinsics.fx == pytest.approx(WIDTH / 2)  # tan(45 deg) = 1
    assert stack.intrinsics.fy == stack.intrinsics.fx
    assert (stack.intrinsics.cx, stack.intrinsics.cy) == ((WIDTH - 1) / 2, (HEIGHT - 1) / 2)
    assert capture.capture_stack() is None, "a single stack without loop replays once"


def test_subfolders_replay_in_sorted_order_and_loop(tmp_path):
    write_stack(tmp_path / "b_scene", [("f_0.3.png", 30), ("f_0.6.png", 60)])
    write_stack(tmp_path / "a_scene", [("f_0.4.png", 40), ("f_0.9.png", 90)])
    (tmp_path / "empty").mkdir()
    capture = DirectoryCapture(tmp_path, loop=True)
    first = [capture.capture_stack().focus_distances_m[0] for _ in range(5)]
    np.testing.assert_allclose(first, [0.4, 0.3, 0.4, 0.3, 0.4])
    once = DirectoryCapture(tmp_path)
    assert once.capture_stack() is not None and once.capture_stack() is not None
    assert once.capture_stack() is None


def test_resize_keeps_aspect_with_one_side_and_scales_given_intrinsics(tmp_path):
    write_stack(tmp_path, [("image_1_0.5.png", 10), ("image_2_1.0.png", 20)])
    native = CameraIntrinsics(fx=100.0, fy=110.0, cx=39.5, cy=29.5, width=WIDTH, height=HEIGHT)
    stack = DirectoryCapture(tmp_path, width_px=40, intrinsics=native).capture_stack()
    assert stack.frames.shape[1:3] == (30, 40)
    assert stack.intrinsics == native.scaled(40, 30)
    assert stack.intrinsics.fx == pytest.approx(50.0) and stack.intrinsics.cx == pytest.approx(19.5)
    exact = DirectoryCapture(tmp_path, width_px=40, height_px=40, intrinsics=native).capture_stack()
    assert exact.frames.shape[1:3] == (40, 40)
    assert exact.intrinsics.fy == pytest.approx(110.0 * 40 / HEIGHT)


def test_stacks_come_unregistered_and_fusion_aligns_them(tmp_path):
    scene = textured_image(HEIGHT * 2 + 20, WIDTH * 2 + 20, seed=4).astype(np.uint8)
    for shift_px, distance in ((0, "0.5"), (3, "0.7"), (6, "0.9")):
        crop = scene[10 + shift_px:10 + shift_px + 2 * HEIGHT, 10:10 + 2 * WIDTH]
        assert cv2.imwrite(str(tmp_path / f"img_{distance}.png"), crop)
    captured = DirectoryCapture(tmp_path).capture_stack()
    assert captured.registered is False and captured.valid_mask is None
    stack = DepthFusion(FocusMeasureBackend(device="cpu")).process(captured).stack
    assert stack.registered is True and stack.valid_mask is not None
    assert not stack.valid_mask[0].any() and stack.valid_mask[-1].all(), "later frames see lower scene rows"
    interior = np.s_[10:-5, 5:-5]
    assert np.abs(stack.frames[2][interior].astype(int) - stack.frames[0][interior]).mean() < 2.0


@pytest.mark.parametrize(
    "files, message",
    [
        ([("image_1_0.5.png", 1)], "at least 2 images"),
        ([("image_1_0.5.png", 1), ("image.png", 2)], "no focus distance"),
        ([("image_1_0.5.png", 1), ("0.9.png", 2)], "no focus distance"),
        ([("image_1_0.5.png", 1), ("image_2_far.png", 2)], "no focus distance"),
        ([("image_1_0.5.png", 1), ("image_2_-1.png", 2)], "not a positive number"),
        ([("image_1_0.8.png", 1), ("image_2_0.80.png", 2)], "duplicated focus distances"),
    ],
)
def test_bad_names_are_capture_errors(tmp_path, files, message):
    write_stack(tmp_path, files)
    with pytest.raises(CaptureError, match=message):
        DirectoryCapture(tmp_path).capture_stack()


def test_unreadable_file_is_a_capture_error(tmp_path):
    write_stack(tmp_path, [("image_1_0.5.png", 1)])
    (tmp_path / "image_2_0.9.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(CaptureError, match="image_2_0.9.jpg: unreadable"):
        DirectoryCapture(tmp_path).capture_stack()


def test_mixed_sizes_are_a_capture_error(tmp_path):
    write_stack(tmp_path, [("image_1_0.5.png", 1)])
    write_frame(tmp_path / "image_2_0.9.png", 2, height=HEIGHT + 1)
    with pytest.raises(CaptureError, match="mixed image sizes"):
        DirectoryCapture(tmp_path).capture_stack()


def test_missing_or_empty_directory_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        DirectoryCapture(tmp_path / "nowhere")
    (tmp_path / "sub").mkdir()
    with pytest.raises(CaptureError, match="no images"):
        DirectoryCapture(tmp_path)


@pytest.mark.skipif(not PIXEL_STACK.is_dir(), reason="../shared/data/pixel6pro_stack not present")
def test_real_pixel_stack_loads_resized_with_scaled_intrinsics():
    stack = DirectoryCapture(PIXEL_STACK, width_px=640, horizontal_fov_deg=70.0).capture_stack()
    np.testing.assert_allclose(stack.focus_distances_m, [0.5, 0.65, 0.8, 0.95, 1.3])
    assert stack.frames.shape == (5, 482, 640, 3)  # 4080x3072 with the aspect kept
    expected_fx = 320.0 / math.tan(math.radians(35.0))
    assert stack.intrinsics.fx == pytest.approx(expected_fx, rel=1e-9)
    assert stack.intrinsics.fy == pytest.approx(expected_fx * 482 / 640 * 4080 / 3072, rel=1e-9)
    assert stack.registered is False and stack.reference_index == 0


# --- fuzz: damaged, oversized and absurd files are errors naming the file, never grey frames ---------


def encoded(extension: str, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    """A textured image file's bytes (texture makes damage visible to the decoder, as in a photo)."""
    image = textured_image(height, width, seed=seed).astype(np.uint8)
    ok, data = cv2.imencode(extension, np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image)
    assert ok
    return data.tobytes()


def with_garbage(data: bytes, length: int = 300) -> bytes:
    middle = len(data) // 2
    garbage = np.random.default_rng(1).integers(0, 256, length, np.uint8).tobytes()
    return data[:middle] + garbage + data[middle + length:]


def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded(".png"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


DAMAGED_FILES = {
    "jpeg truncated to 60 %": ("image_2_0.9.jpg", lambda: encoded(".jpg")[: int(len(encoded(".jpg")) * 0.6)]),
    "jpeg with garbage mid-file": ("image_2_0.9.jpg", lambda: with_garbage(encoded(".jpg"))),
    "png truncated": ("image_2_0.9.png", lambda: encoded(".png")[: len(encoded(".png")) // 2]),
    "png with garbage mid-file": ("image_2_0.9.png", lambda: with_garbage(encoded(".png"))),
    "empty file": ("image_2_0.9.jpg", lambda: b""),
    "png declaring 100000 x 100000 px": ("image_2_0.9.png", lambda: png_declaring(100_000, 100_000)),
}


@pytest.mark.parametrize("name, make", DAMAGED_FILES.values(), ids=list(DAMAGED_FILES))
def test_a_damaged_file_fails_its_stack_and_the_next_stack_still_replays(tmp_path, name, make):
    write_stack(tmp_path / "a_bad", [("image_1_0.5.png", 10)])
    (tmp_path / "a_bad" / name).write_bytes(make())
    write_stack(tmp_path / "b_good", [("image_1_0.5.png", 10), ("image_2_0.9.png", 20)])
    capture = DirectoryCapture(tmp_path, loop=True)
    for _ in range(2):  # refused again on the next loop: never cached, never published
        with pytest.raises(CaptureError, match=rf"a_bad/{name}: unreadable image file"):
            capture.capture_stack()
        assert capture.capture_stack().num_frames == 2


def test_damage_is_reported_from_the_decoder_not_guessed(tmp_path, capfd):
    write_stack(tmp_path, [("image_1_0.5.png", 10)])
    (tmp_path / "image_2_0.9.jpg").write_bytes(with_garbage(encoded(".jpg")))
    with pytest.raises(CaptureError, match="damaged image data \\(decoder says: Corrupt JPEG data"):
        DirectoryCapture(tmp_path).capture_stack()
    assert "Corrupt JPEG data" in capfd.readouterr().err, "the decoder's own line still reaches stderr"


def test_intact_jpegs_png_bmp_and_tiff_replay(tmp_path):
    for index, extension in enumerate((".jpg", ".png", ".bmp", ".tiff")):
        (tmp_path / f"image_{index}_{0.5 + index}{extension}").write_bytes(encoded(extension, seed=index))
    assert DirectoryCapture(tmp_path).capture_stack().num_frames == 4


@pytest.mark.parametrize(
    "names, message",
    [
        ([f"image_{i}_{0.5 + 0.01 * i:.2f}.png" for i in range(MAX_FRAMES + 1)], f"at most {MAX_FRAMES} images"),
        (["image_1_0.001.png", "image_2_0.5.png"], "within 0.01..1000 m"),
        (["image_1_0.5.png", "image_2_5000.png"], "within 0.01..1000 m"),
    ],
)
def test_absurd_stacks_are_refused(tmp_path, names, message):
    for name in names:
        (tmp_path / name).write_bytes(encoded(".png", 16, 12))
    with pytest.raises(CaptureError, match=message):
        DirectoryCapture(tmp_path).capture_stack()


def test_the_decoded_stack_cache_is_bounded(tmp_path):
    for scene in range(4):
        write_stack(tmp_path / f"scene_{scene}", [("f_0.5.png", scene), ("f_0.9.png", scene + 1)])
    stack_bytes = 2 * HEIGHT * WIDTH * 3
    capture = DirectoryCapture(tmp_path, loop=True, max_cache_bytes=2 * stack_bytes)
    for _ in range(8):
        capture.capture_stack()
        assert len(capture._cache) <= 2
    assert len(DirectoryCapture(tmp_path, loop=True, max_cache_bytes=0)._cache) == 0
