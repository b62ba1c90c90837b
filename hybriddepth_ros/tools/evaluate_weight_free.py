"""Accuracy of the weight-free backend against ground truth: the targets table of issue 10.

    python -m hybriddepth_ros.tools.evaluate_weight_free --seeds 1000-1019 --frames 5,10 \
        --kinds sim,nyu --cache-dir /tmp/weight_free_stacks [--compare]

Stacks are 480x640 renders of the simulator's procedural RGB-D scenes (seeds
that no test or the demo uses):
- `sim`: the layered thin-lens renderer, the simulated camera's lens and sweep
  (diopter-even over 0.3-5 m), 1 DN sensor noise;
- `simfit`: the same, with the sweep diopter-even between the scene's own
  nearest and farthest depth, as the paper's protocol takes its sweep from
  the ground truth;
- `nyu`: the paper's NYU protocol (core/sim/nyu_protocol.py: f/8, 50 mm, 12 um,
  7x7 gather, N focus distances linear between the scene's min and max depth),
  no noise, with the backend's NYU_PROTOCOL_SETTINGS (core/depth/focus_measure.py);
- `nyu_far`: the same protocol on scenes at 0.8-6 m, nearer to the depth of indoor rooms;
- `photo`: the same protocol on a real photo (`--photo`, e.g. a frame of ../shared's Pixel stack: real
  texture, weak on walls, with its JPEG blocks) over a smooth depth field (no occlusion edges), each seed its
  own crop of the photo and its own field (photo_depth_m);
- `photofit`: the same photo through the layered renderer with the simulated camera's disc lens, 1 DN noise
  and the sweep diopter-even over the field's range (as `simfit`), with the camera defaults; its fields are
  nearer (PHOTOFIT_FIELD), where that small lens blurs enough to be read.
One backend scores the seeds of a kind and frame count in order, as a camera's
node would see them: where the sweep is the same for every scene (`sim`), the
blur rate pools over the stacks seen so far (BlurRatePool; `--option
blur_rate_stacks=1` scores each scene alone). `simfit` and the NYU kinds take
their sweep from each scene, so every scene calibrates alone.
For each kind and frame count it prints, averaged over the seeds: dense AbsRel,
delta1, coverage, AUSE (AbsRel) and the ratio of the AbsRel of the most
confident half of the pixels to that of all; and AbsRel, delta1 and coverage
of the measured (not propagated) pixels alone. `--compare` also scores two
other ways to fill the same measurements: nearest-measurement fill (no guide)
and a guided pyramid normalised convolution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.capture.simulated import DEFAULT_SIMULATED_LENS
from ..core.depth.focus_measure import NYU_PROTOCOL_SETTINGS, FocusMeasureBackend
from ..core.eval.metrics import depth_metrics
from ..core.eval.sparsification import sparsification_abs_rel
from ..core.sim.nyu_protocol import nyu_focus_distances_m, render_nyu_focal_stack
from ..core.sim.scene import make_scene
from ..core.sim.thin_lens import render_focal_stack
from ..core.stack.camera import CameraIntrinsics
from ..core.stack.focal_stack import FocalStack, diopter_sweep

KINDS = ("sim", "simfit", "nyu", "nyu_far", "photo", "photofit")
PHOTO_KINDS = ("photo", "photofit")
NYU_KINDS = ("nyu", "nyu_far", "photo")
FAR_SCENE_M = (0.8, 6.0)
"""Depth range of the `nyu_far` scenes: nearer to indoor rooms (NYU Depth v2) than the default 0.3-5 m."""
OPTIONS = {
    "sim": {"curve_exponent": -3.0},
    "simfit": {"curve_exponent": -3.0},
    "nyu": NYU_PROTOCOL_SETTINGS,
    "nyu_far": NYU_PROTOCOL_SETTINGS,
    "photo": NYU_PROTOCOL_SETTINGS,
    "photofit": {"curve_exponent": -3.0},
}
"""Backend options per kind: disc blur (a real aperture) for the layered renderer; the NYU protocol's
own settings (core/depth/focus_measure.py) for its stacks."""
SIM_SWEEP_M = (0.3, 5.0)


PHOTO_NEAR_M = (0.6, 2.5)
"""Range of the nearest depth of a `photo` field, drawn per seed; the farthest is 1.5-4 times it (at most 10 m)."""
PHOTOFIT_FIELD = {"near_m": (0.3, 1.0), "far_factor": (2.0, 5.0), "max_far_m": 5.0}
"""photo_depth_m's ranges for `photofit`: nearest 0.3-1 m, farthest 2-5 times it (at most 5 m, the simulated
camera's sweep). The simulated camera's lens (12 mm f/1.4, 15 um) blurs 6.9 px per diopter, so a 2-4 m room
spans 2 px of blur, no focus cue over its texture's noise (the `photo` fields gave no depth at all for 8 of
20 scenes)."""


def photo_depth_m(seed: int, height: int, width: int, near_m: tuple[float, float] = PHOTO_NEAR_M,
                  far_factor: tuple[float, float] = (1.5, 4.0), max_far_m: float = 10.0) -> np.ndarray:
    """(height, width) float32 smooth depth for the photo kinds: in inverse depth a tilted plane plus three
    broad bumps, spread from a nearest depth drawn in `near_m` to `far_factor` times it (at most `max_far_m`)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.linspace(-0.5, 0.5, height), np.linspace(-0.5, 0.5, width), indexing="ij")
    field = rng.normal(size=2) @ np.stack([rows.ravel(), cols.ravel()])
    field = field.reshape(height, width)
    for _ in range(3):
        centre, spread = rng.uniform(-0.5, 0.5, size=2), rng.uniform(0.15, 0.4)
        field += rng.normal() * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * spread**2))
    nearest_m = rng.uniform(*near_m)
    far_m = min(nearest_m * rng.uniform(*far_factor), max_far_m)
    unit = (field - field.min()) / max(float(np.ptp(field)), 1e-12)  # 0 nearest, 1 farthest
    return (1.0 / (1.0 / nearest_m + unit * (1.0 / far_m - 1.0 / nearest_m))).astype(np.float32)


def photo_texture(photo: Path, seed: int, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB: a crop of `photo` drawn from the seed (70-100 % of its side, the
    output's aspect, mirrored half the time), resized."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read the photo {photo}")
    rng = np.random.default_rng(seed + 1)
    image_h, image_w = image.shape[:2]
    scale = rng.uniform(0.7, 1.0) * min(image_h / height, image_w / width)
    crop_h, crop_w = int(round(height * scale)), int(round(width * scale))
    top, left = rng.integers(0, image_h - crop_h + 1), rng.integers(0, image_w - crop_w + 1)
    crop = image[top:top + crop_h, left:left + crop_w]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    return cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def make_stack(kind: str, seed: int, frames: int, height: int, width: int, cache_dir: Path | None,
               photo: Path | None = None):
    """(FocalStack, ground-truth depth) for one scene; rendered once and kept in `cache_dir` if given."""
    if kind in PHOTO_KINDS and photo is None:
        raise ValueError(f"the {kind} kind needs a photo (--photo)")
    name = f"{kind}-{photo.stem}" if kind in PHOTO_KINDS else kind
    cached = None if cache_dir is None else cache_dir / f"{name}_{seed}_{frames}_{height}x{width}.npz"
    if cached is not None and cached.exists():
        data = np.load(cached)
        rendered, focus_m, truth = data["frames"], data["focus"], data["depth"]
    else:
        if kind in PHOTO_KINDS:
            field = PHOTOFIT_FIELD if kind == "photofit" else {}
            rgb, truth = photo_texture(photo, seed, height, width), photo_depth_m(seed, height, width, **field)
        else:
            near_m, far_m = FAR_SCENE_M if kind == "nyu_far" else (0.3, 5.0)
            scene = make_scene(seed, height, width, near_m=near_m, far_m=far_m)
            rgb, truth = scene.rgb, scene.depth_m
        if kind in NYU_KINDS:
            focus_m = nyu_focus_distances_m(truth, frames)
            rendered = np.clip(np.rint(render_nyu_focal_stack(rgb, truth, focus_m).numpy()), 0, 255).astype(np.uint8)
        else:
            near_m, far_m = SIM_SWEEP_M if kind == "sim" else (float(truth.min()), float(truth.max()))
            focus_m = diopter_sweep(near_m, far_m, frames)
            rendered = render_focal_stack(rgb, truth, focus_m, DEFAULT_SIMULATED_LENS, noise_std=1.0, seed=seed)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, frames=rendered, focus=focus_m, depth=truth)
    intrinsics = CameraIntrinsics.from_lens(DEFAULT_SIMULATED_LENS, width, height)
    return FocalStack(rendered, np.asarray(focus_m, dtype=float), intrinsics), truth


def score(depth_m, confidence, truth, measured) -> dict[str, float]:
    dense = depth_metrics(depth_m, truth)
    ranking = sparsification_abs_rel(depth_m, truth, confidence)
    on_measured = depth_metrics(depth_m, truth, measured)
    return {
        "abs_rel": dense["abs_rel"], "delta1": dense["delta1"], "coverage": dense["coverage"],
        "ause": ranking["ause"], "half_ratio": ranking["half_ratio"],
        "measured_abs_rel": on_measured["abs_rel"], "measured_delta1": on_measured["delta1"],
        "measured_share": float(np.mean(measured)),
    }


def nearest_fill(depth_m: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Baseline: each pixel takes the mean measured depth of the smallest pyramid block around it that has one (no guide)."""
    value = torch.where(measured, depth_m, 0.0)[None, None]
    weight = measured.to(depth_m.dtype)[None, None]
    levels = [(value, weight)]
    while min(value.shape[-2:]) > 1 and bool((weight == 0).any()):
        value, weight = F.avg_pool2d(value, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)
        levels.append((value, weight))
    filled = levels[-1][0] / levels[-1][1].clamp(min=1e-12)
    for value, weight in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=value.shape[-2:], mode="nearest")
        filled = torch.where(weight > 0, value / weight.clamp(min=1e-12), coarse)
    return filled[0, 0]


def guided_push_pull(depth_m, confidence, guide, measured, sigma: float = 0.06) -> torch.Tensor:
    """Baseline: normalised convolution of inverse depth on a pyramid, pulled back up with guide-similarity weights."""
    value = torch.where(measured, confidence / depth_m, 0.0)[None, None]
    weight = torch.where(measured, confidence, 0.0)[None, None]
    levels = [(value, weight, guide[None])]
    while min(value.shape[-2:]) > 2:
        value, weight = F.avg_pool2d(value, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)
        levels.append((value, weight, F.avg_pool2d(levels[-1][2], 2, ceil_mode=True)))
    value, weight, coarse_guide = levels[-1]
    mean = value.sum() / weight.sum().clamp(min=1e-12)
    filled = torch.where(weight > 0, value / weight.clamp(min=1e-12), mean)
    for value, weight, fine_guide in reversed(levels[:-1]):
        height, width = value.shape[-2:]
        up = F.interpolate(filled, scale_factor=2, mode="nearest")[..., :height, :width]
        up_guide = F.interpolate(coarse_guide, scale_factor=2, mode="nearest")[..., :height, :width]
        similarity = torch.exp(-((fine_guide - up_guide) ** 2).sum(1, keepdim=True) / (2 * sigma**2))
        blend = weight / (weight + 0.05 * similarity + 1e-12)
        filled = blend * (value / weight.clamp(min=1e-12)) + (1 - blend) * up
        coarse_guide = fine_guide
    return 1.0 / filled[0, 0].clamp(min=1e-6)


def evaluate(kind, frames, seeds, height, width, cache_dir, compare, options=None,
             photo: Path | None = None) -> dict[str, list[dict]]:
    dense_backend = FocusMeasureBackend(device="cpu", **{**OPTIONS[kind], **(options or {})})
    rows: dict[str, list[dict]] = {"dense": []}
    if compare:
        rows.update({"nearest_fill": [], "guided_push_pull": []})
    for seed in seeds:
        stack, truth = make_stack(kind, seed, frames, height, width, cache_dir, photo)
        started = time.perf_counter()
        result = dense_backend.estimate(stack)
        elapsed_s = time.perf_counter() - started
        rows["dense"].append({**score(result.depth_m, result.confidence, truth, result.measured), "seconds": elapsed_s})
        if compare:
            measured = torch.from_numpy(result.measured)
            depth = torch.from_numpy(np.where(result.measured, result.depth_m, np.nan))
            confidence = torch.from_numpy(result.confidence)
            guide = torch.from_numpy(stack.reference_frame).permute(2, 0, 1).float() / 255.0
            for name, fill in (("nearest_fill", lambda: nearest_fill(depth, measured)),
                               ("guided_push_pull", lambda: guided_push_pull(depth, confidence, guide, measured))):
                started = time.perf_counter()
                filled = fill().numpy()
                seconds = time.perf_counter() - started
                conf = np.where(result.measured, result.confidence, 0.0)
                rows[name].append({**score(filled, conf, truth, result.measured), "seconds": seconds})
    return rows


def format_table(results: dict[tuple[str, int], dict[str, list[dict]]], seeds) -> str:
    lines = [
        f"weight-free backend, 480x640 unless stated, mean over seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} scenes)",
        f"{'kind':<7}{'N':>3} {'method':<17}| {'AbsRel':>7}{'median':>7}{'d1':>7}{'cover':>7}{'AUSE':>8}{'half':>6} |"
        f" {'meas AbsRel':>11}{'meas d1':>8}{'share':>7} | {'ms':>6}",
    ]
    for (kind, frames), rows in results.items():
        for method, entries in rows.items():
            mean = {key: float(np.nanmean([e[key] for e in entries])) for key in entries[0]}
            lines.append(
                f"{kind:<7}{frames:>3} {method:<17}| {mean['abs_rel']:>7.4f}"
                f"{float(np.median([e['abs_rel'] for e in entries])):>7.4f}{mean['delta1']:>7.3f}{mean['coverage']:>7.3f}"
                f"{mean['ause']:>8.4f}{mean['half_ratio']:>6.2f} | {mean['measured_abs_rel']:>11.4f}"
                f"{mean['measured_delta1']:>8.3f}{mean['measured_share']:>7.3f} | "
                f"{1e3 * float(np.median([e['seconds'] for e in entries])):>6.0f}"
            )
    lines.append("AbsRel: mean over scenes; median: of the scenes' AbsRel; half = AbsRel of the most confident half / "
                 "AbsRel of all; meas = measured (not propagated) pixels, share = their fraction; ms = median time of the backend "
                 "(the fill alone for the other fills), CPU, 1 thread, on a machine as busy as it was")
    return "\n".join(lines)


def _seed_range(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1000-1019", help="first-last or a comma list")
    parser.add_argument("--frames", default="5,10")
    parser.add_argument("--kinds", default="sim,nyu", help=f"comma list of {', '.join(KINDS)}")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep rendered stacks here (rendering dominates)")
    parser.add_argument("--photo", type=Path, default=None,
                        help="the photo the photo kind renders its stacks from (an RGB image file)")
    parser.add_argument("--compare", action="store_true", help="also score the nearest and push-pull fills")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a FocusMeasureBackend option (repeatable), e.g. end_peak_weight=0.5")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; known: {KINDS}")
    if set(PHOTO_KINDS) & set(kinds) and (args.photo is None or not args.photo.is_file()):
        parser.error(f"the {' and '.join(PHOTO_KINDS)} kinds need --photo, an image file (got {args.photo})")
    seeds = _seed_range(args.seeds)
    options = {name: float(value) for name, value in (option.split("=", 1) for option in args.option)}
    results = {}
    for kind in kinds:
        for frames in (int(n) for n in args.frames.split(",")):
            results[(kind, frames)] = evaluate(kind, frames, seeds, args.height, args.width, args.cache_dir,
                                               args.compare, options, args.photo)
    print(format_table(results, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
