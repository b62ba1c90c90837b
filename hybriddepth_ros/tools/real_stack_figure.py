"""Weight-free depth of a real focal-stack folder, as a figure: reference | depth | confidence, with colour bars.

    python -m hybriddepth_ros.tools.real_stack_figure ../shared/data/pixel6pro_stack \
        --out docs/pixel6pro_weight_free.png --width 640 --height 480

Runs exactly the fusion node's path (directory backend, DepthFusion with
registration, the default weight-free backend and default masks) and prints
coverage (of the registered pixels), the depth range published, and how much
of it lies inside the sweep's focus range. Depth is coloured by inverse depth
over the sweep's range (near red, far blue), with a colour bar in metres;
confidence in grey, 0 black to 1 white; NaN is black in both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ..core.capture.directory import DirectoryCapture
from ..core.depth.focus_measure import FocusMeasureBackend
from ..core.depth.fusion import DepthFusion
from ..core.eval.visualize import colorize_depth

BAR_WIDTH_PX = 70


def depth_colour_bar(height: int, min_depth_m: float, max_depth_m: float) -> np.ndarray:
    """(height, BAR_WIDTH_PX, 3) BGR bar matching colorize_depth over [min, max] m, labelled in metres."""
    inverse = np.linspace(1.0 / min_depth_m, 1.0 / max_depth_m, height)  # near (top) to far (bottom)
    column = colorize_depth((1.0 / inverse)[:, None].astype(np.float32), min_depth_m, max_depth_m)
    bar = np.full((height, BAR_WIDTH_PX, 3), 255, np.uint8)
    bar[:, 4:20] = column
    for depth_m in _ticks(min_depth_m, max_depth_m):
        row = int(round((1.0 / min_depth_m - 1.0 / depth_m) / (1.0 / min_depth_m - 1.0 / max_depth_m) * (height - 1)))
        cv2.line(bar, (20, row), (25, row), (0, 0, 0), 1)
        cv2.putText(bar, f"{depth_m:g} m", (27, min(max(row + 4, 10), height - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def confidence_colour_bar(height: int) -> np.ndarray:
    bar = np.full((height, BAR_WIDTH_PX, 3), 255, np.uint8)
    bar[:, 4:20] = np.linspace(255, 0, height).astype(np.uint8)[:, None, None]
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        row = int(round((1.0 - value) * (height - 1)))
        cv2.line(bar, (20, row), (25, row), (0, 0, 0), 1)
        cv2.putText(bar, f"{value:.2f}", (27, min(max(row + 4, 10), height - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def _ticks(min_depth_m: float, max_depth_m: float) -> list[float]:
    candidates = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0])
    inside = candidates[(candidates >= min_depth_m - 1e-9) & (candidates <= max_depth_m + 1e-9)]
    return sorted({round(min_depth_m, 2), *inside.tolist(), round(max_depth_m, 2)})


def figure(reference_rgb, depth_m, confidence, min_depth_m, max_depth_m, title: str) -> np.ndarray:
    height = depth_m.shape[0]
    reference = cv2.cvtColor(reference_rgb, cv2.COLOR_RGB2BGR)
    coloured = colorize_depth(depth_m, min_depth_m, max_depth_m)
    grey = (np.clip(np.nan_to_num(confidence), 0, 1) * 255).astype(np.uint8)
    panel = np.hstack([reference, coloured, depth_colour_bar(height, min_depth_m, max_depth_m),
                       cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), confidence_colour_bar(height)])
    header = np.full((24, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, panel])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=Path("weight_free_depth.png"))
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--scale", type=float, default=1.0, help="resize the figure by this factor (e.g. 0.5 for docs)")
    args = parser.parse_args(argv)
    stack = DirectoryCapture(args.folder, width_px=args.width, height_px=args.height).capture_stack()
    fused = DepthFusion(FocusMeasureBackend(device="cpu")).process(stack)
    registered = fused.stack.valid_mask if fused.stack.valid_mask is not None else np.ones(fused.depth_m.shape, bool)
    finite = np.isfinite(fused.depth_m)
    near_m, far_m = float(stack.focus_distances_m[0]), float(stack.focus_distances_m[-1])
    depths = fused.depth_m[finite]
    inside_sweep = float(np.mean((depths >= near_m - 1e-6) & (depths <= far_m + 1e-6))) if depths.size else 0.0
    print(f"{args.folder}: {stack.num_frames} frames, {stack.width}x{stack.height}, sweep {near_m:g}-{far_m:g} m")
    print(f"coverage of registered pixels: {finite[registered].mean():.3f} ({registered.mean():.3f} of the image registered)")
    if depths.size:
        low, median, high = np.percentile(depths, [1, 50, 99])
        print(f"depth m: min {depths.min():.3f}  p1 {low:.3f}  median {median:.3f}  p99 {high:.3f}  max {depths.max():.3f}; "
              f"inside the sweep range: {inside_sweep:.3f}")
        print(f"measured fraction {fused.diagnostics.get('measured_fraction', float('nan')):.3f}; "
              f"median confidence {np.median(fused.confidence[finite]):.2f}")
    timing = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in fused.timings_s.items())
    print(f"timings (one cold run): {timing}")
    title = (f"{args.folder.name}: reference | weight-free depth (m) | confidence    "
             f"coverage {finite[registered].mean():.1%}, sweep {near_m:g}-{far_m:g} m")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = figure(fused.reference_rgb, fused.depth_m, fused.confidence, near_m, far_m, title)
    if args.scale != 1.0:
        image = cv2.resize(image, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(args.out), image)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
