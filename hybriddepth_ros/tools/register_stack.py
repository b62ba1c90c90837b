"""Register a focal stack folder and show it before and after alignment.

Example:
    python -m hybriddepth_ros.tools.register_stack ../shared/data/pixel6pro_stack --out before_after.png

Prints per frame the focus distance, the alignment's correlation, the warp's scale and
shift, and the median misalignment (px, at the working size) before and after.
The image has one row per frame: the frame, then red/cyan overlays of the
reference (red) and the frame (cyan) before and after registration; aligned
content looks grey, misaligned edges show colour fringes.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from ..core.capture.base import CaptureError
from ..core.capture.directory import DirectoryCapture
from ..core.stack.focal_stack import FocalStack
from ..core.stack.registration import RegistrationError, alignment_residual_px, apply_homography, register_stack

THUMB_WIDTH_PX = 320


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="folder of images named <anything>_<focus metres>.<ext>")
    parser.add_argument("--out", default="before_after.png", help="output PNG")
    parser.add_argument("--width", type=int, default=640, help="resize frames to this width first (px)")
    parser.add_argument("--height", type=int, default=None, help="and this height (default: keep aspect)")
    parser.add_argument("--motion", choices=["homography", "affine"], default="homography")
    args = parser.parse_args(argv)

    try:
        stack = DirectoryCapture(args.directory, width_px=args.width, height_px=args.height).capture_stack()
        start_s = time.perf_counter()
        result = register_stack(stack, args.motion)
        elapsed_s = time.perf_counter() - start_s
    except (CaptureError, RegistrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in stack.frames]
    registered_grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in result.stack.frames]
    ref = stack.reference_index
    centre = np.array([[(stack.width - 1) / 2.0, (stack.height - 1) / 2.0]])
    print(f"{stack.num_frames} frames {stack.width}x{stack.height}, reference {ref}, motion {args.motion}")
    print("frame  focus_m  correlation  scale   shift_px  residual_before_px  residual_after_px")
    for i in range(stack.num_frames):
        warp = result.warps[i]
        scale = float(np.sqrt(abs(np.linalg.det(warp[:2, :2] / warp[2, 2]))))
        shift_px = float(np.linalg.norm(apply_homography(warp, centre) - centre))
        before_px = 0.0 if i == ref else alignment_residual_px(grays[ref], grays[i])
        print(
            f"{i:5d}  {stack.focus_distances_m[i]:7.3f}  {result.correlation[i]:11.4f}  {scale:6.4f}  "
            f"{shift_px:8.2f}  {before_px:18.3f}  {result.residual_px[i]:17.3f}"
        )
    print(f"valid area {result.stack.valid_mask.mean():.1%}, registration took {elapsed_s:.2f} s")

    rgb = _before_after_grid(stack, result.stack, grays, registered_grays)
    if not cv2.imwrite(args.out, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        print(f"error: cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


def _before_after_grid(
    stack: FocalStack, registered: FocalStack, grays: list[np.ndarray], registered_grays: list[np.ndarray]
) -> np.ndarray:
    ref = stack.reference_index
    thumb_size = (THUMB_WIDTH_PX, round(stack.height * THUMB_WIDTH_PX / stack.width))
    invalid = ~registered.valid_mask
    rows = []
    for i in range(stack.num_frames):
        after = _red_cyan(registered_grays[ref], registered_grays[i])
        after[invalid] //= 3
        tiles = [
            (stack.frames[i], f"frame {i}: {stack.focus_distances_m[i]:.2f} m"),
            (_red_cyan(grays[ref], grays[i]), "before"),
            (after, "after (dim: invalid)"),
        ]
        thumbs = [_labelled(cv2.resize(t, thumb_size, interpolation=cv2.INTER_AREA), text) for t, text in tiles]
        rows.append(np.hstack(thumbs))
    return np.vstack(rows)


def _red_cyan(reference_gray: np.ndarray, frame_gray: np.ndarray) -> np.ndarray:
    return np.dstack([reference_gray, frame_gray, frame_gray])


def _labelled(tile_rgb: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile_rgb)
    (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    cv2.rectangle(tile, (0, 0), (text_width + 8, text_height + 10), (0, 0, 0), cv2.FILLED)
    cv2.putText(tile, text, (4, text_height + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return tile


if __name__ == "__main__":
    sys.exit(main())
