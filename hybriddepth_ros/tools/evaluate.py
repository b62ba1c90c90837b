"""hybriddepth-eval: score a depth backend on NYU Depth v2, DDFF12, your recordings, a ROS bag or simulated scenes.

Each stack runs through DepthFusion with the backend built by the same
registry the fusion node uses, so the numbers are those of the published
depth. One backend takes the stacks in order, as the node would: the
weight-free one averages its blur rate over the earlier stacks of the same
sweep (BlurRatePool; the fixed sweep, not the oracle one). RGB-D datasets
get stacks synthesised on the torch device by the paper's NYU protocol,
with the paper's oracle sweep, a fixed camera sweep, or both (the default).
The weight-free backend scores those with the settings for that renderer
(NYU_PROTOCOL_SETTINGS; `--weight-free-settings`), recorded stacks with the
node's defaults, which are for a real lens.
Prints a Markdown table; `--output-dir` adds per_sample.csv, summary.json,
summary.md and PNG panels.

    hybriddepth-eval nyu_depth_v2_labeled.mat --backend focus_measure --output-dir eval_nyu
    hybriddepth-eval nyu/official_splits/test --backend hybriddepth --checkpoint NYUBest5-DFV-Trained.ckpt
    hybriddepth-eval my_ddff_trainVal.h5 --split val --stack-size 5
    hybriddepth-eval recordings/ --backend hybriddepth --relative-weights depth_anything_vits14.pth \\
        --metric-branch focus_measure
    hybriddepth-eval --dataset simulated --scenes 8
Exit status 2 with one line naming the file for unusable input (dataset, weights, options).
"""

from __future__ import annotations

import argparse
import sys

from ..core.data import DATASET_KINDS, DatasetError, open_dataset
from ..core.data.sample import Subset
from ..core.data.synthesis import SWEEP_PROTOCOLS, SweepProtocol
from ..core.depth.focus_measure import NYU_PROTOCOL_SETTINGS
from ..core.depth.fusion import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_MAX_DEPTH_M, DEFAULT_MIN_DEPTH_M, DepthFusion
from ..core.depth.registry import DEPTH_BACKENDS, create_depth_backend
from ..core.eval.evaluation import evaluate
from ..core.eval.report import markdown_table, write_report
from ..core.models.weights import WeightsError

DEFAULT_STACK_SIZE = 5
"""Frames per stack: the paper's 5-frame models (NYUBest5, DDFF12 with n_stack=5)."""
DEFAULT_PANELS = (0, 1, 2, 3)
WEIGHT_FREE_SETTINGS = ("auto", "camera", "nyu_protocol")
"""auto: nyu_protocol for stacks this tool synthesises (RGB-D datasets), camera for recorded ones."""


def add_dataset_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Options that pick and open a dataset (shared with hybriddepth-train, which also reads a validation set)."""
    flag = f"--{prefix}-" if prefix else "--"
    parser.add_argument(f"{flag}dataset", choices=DATASET_KINDS, default=None,
                        help="reader; detected from the path when omitted")
    parser.add_argument(f"{flag}split", default=None, help="NYU: test | train | all (test); DDFF12: val | train (val)")
    parser.add_argument(f"{flag}split-file", default=None, help="NYU folders: list of 'rgb_path depth_path' lines")
    parser.add_argument(f"{flag}no-centre-crop", action="store_true",
                        help="NYU: keep the full image (default: the reference's central 512x384 window)")
    parser.add_argument(f"{flag}depth-topic", default=None, help="bag: the depth Image topic (default: the only one)")
    parser.add_argument(f"{flag}stack-topic", default=None, help="bag: the FocalStack topic (default focal_stack)")
    parser.add_argument(f"{flag}slop-s", type=float, default=None, help="bag: max stamp difference of a pair")
    parser.add_argument(f"{flag}max-gt-depth-m", type=float, default=None,
                        help="recordings / bags: ground truth beyond this is not scored (the depth camera's range)")
    parser.add_argument(f"{flag}scenes", type=int, default=8, help="simulated: number of scenes")
    parser.add_argument(f"{flag}scene-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"),
                        help="simulated: scene size in px")
    parser.add_argument(f"{flag}first-seed", type=int, default=0, help="simulated: seed of the first scene")
    parser.add_argument(f"{flag}limit", type=int, default=None, help="only the first N samples")


def open_dataset_from_args(args: argparse.Namespace, path, stack_size: int, prefix: str = ""):
    """The dataset the flags of `add_dataset_arguments(parser, prefix)` describe."""
    get = lambda name: getattr(args, f"{prefix}_{name}" if prefix else name)  # noqa: E731
    dataset = open_dataset(
        get("dataset"), path,
        split=get("split"), split_file=get("split_file"), centre_crop=not get("no_centre_crop"),
        stack_size=stack_size, stack_topic=get("stack_topic"), depth_topic=get("depth_topic"),
        slop_s=get("slop_s"), max_depth_m=get("max_gt_depth_m"),
        count=get("scenes"), height=get("scene_size")[0], width=get("scene_size")[1], first_seed=get("first_seed"),
    )
    if get("limit") is not None:
        dataset = Subset(dataset, range(min(get("limit"), len(dataset))), "first samples")
    return dataset


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """The fusion node's backend parameters as flags; unset ones keep the backend's own defaults."""
    parser.add_argument("--backend", choices=DEPTH_BACKENDS, default="focus_measure")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--checkpoint", default=None, help="hybriddepth: an official-layout .ckpt")
    parser.add_argument("--relative-weights", default=None, help="hybriddepth: a Depth Anything V1/V2 file")
    parser.add_argument("--relative-encoder", default=None, help="vits | vitb | vitl")
    parser.add_argument("--relative-version", type=int, default=None, help="Depth Anything 1 or 2")
    parser.add_argument("--dfv-weights", default=None, help="hybriddepth: a DFV weight file")
    parser.add_argument("--metric-branch", default=None, help="dfv | focus_measure")
    parser.add_argument("--precision", default=None, help="fp32 | fp16 | bf16")
    parser.add_argument("--relative-input", default=None, help="reference | all_in_focus")
    parser.add_argument("--alignment", default=None, help="least_squares | confidence_weighted")
    parser.add_argument("--working-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--weight-free-settings", choices=WEIGHT_FREE_SETTINGS, default="auto",
                        help="focus_measure: the node's defaults (camera, a real lens) or NYU_PROTOCOL_SETTINGS "
                             "(nyu_protocol); auto: nyu_protocol where the stacks are synthesised by it")


def focus_measure_options(args: argparse.Namespace, synthesised: bool) -> dict:
    """The FocusMeasureBackend options of `--weight-free-settings`; `synthesised`: the stacks are rendered by
    the NYU protocol (core/sim/nyu_protocol.py), whose capped Gaussian blur the camera defaults do not suit."""
    wanted = args.weight_free_settings
    if wanted == "nyu_protocol" or (wanted == "auto" and synthesised):
        return dict(NYU_PROTOCOL_SETTINGS)
    return {}


def hybriddepth_options(args: argparse.Namespace) -> dict:
    """The HybridDepthBackend keyword options the user set (the rest keep the backend's defaults)."""
    options = {
        "checkpoint_path": args.checkpoint,
        "relative_weights_path": args.relative_weights,
        "relative_encoder": args.relative_encoder,
        "relative_version": args.relative_version,
        "dfv_weights_path": args.dfv_weights,
        "metric_branch": args.metric_branch,
        "precision": args.precision,
        "relative_input": args.relative_input,
        "alignment": args.alignment,
        "working_size": tuple(args.working_size) if args.working_size else None,
    }
    return {key: value for key, value in options.items() if value is not None}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybriddepth-eval", description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=None, help="dataset file or folder (none for --dataset simulated)")
    add_dataset_arguments(parser)
    parser.add_argument("--stack-size", type=int, default=DEFAULT_STACK_SIZE,
                        help="frames per synthesised stack; DDFF12: frames used of its 10")
    parser.add_argument("--sweep", choices=(*SWEEP_PROTOCOLS, "both"), default="both",
                        help="RGB-D datasets: where the synthesised stack is focused")
    parser.add_argument("--sweep-near-m", type=float, default=None, help="fixed sweep: nearest focus")
    parser.add_argument("--sweep-far-m", type=float, default=None, help="fixed sweep: farthest focus")
    add_backend_arguments(parser)
    parser.add_argument("--min-depth-m", type=float, default=DEFAULT_MIN_DEPTH_M)
    parser.add_argument("--max-depth-m", type=float, default=DEFAULT_MAX_DEPTH_M)
    parser.add_argument("--confidence-threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD,
                        help="depth below this confidence is unknown, as the node publishes it (0: dense)")
    parser.add_argument("--output-dir", default=None, help="write per_sample.csv, summary.json/.md and panels/")
    parser.add_argument("--panels", type=int, nargs="*", default=list(DEFAULT_PANELS),
                        help="sample indices to draw (with --output-dir)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def sweep_protocols(args: argparse.Namespace, dataset) -> list[SweepProtocol]:
    if dataset.has_stacks:
        return []
    names = SWEEP_PROTOCOLS if args.sweep == "both" else (args.sweep,)
    near_m = args.sweep_near_m if args.sweep_near_m is not None else dataset.fixed_sweep_m[0]
    far_m = args.sweep_far_m if args.sweep_far_m is not None else dataset.fixed_sweep_m[1]
    return [SweepProtocol(name, args.stack_size, near_m, far_m) if name == "fixed" else SweepProtocol(name, args.stack_size)
            for name in names]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        dataset = open_dataset_from_args(args, args.path, args.stack_size)
        sweeps = sweep_protocols(args, dataset)
        if args.backend == "hybriddepth":
            options = hybriddepth_options(args)
        else:
            options = focus_measure_options(args, synthesised=not dataset.has_stacks)
        backend = create_depth_backend(args.backend, args.device, **options)
        fusion = DepthFusion(backend, args.min_depth_m, args.max_depth_m, args.confidence_threshold)
    except (DatasetError, WeightsError, ValueError, RuntimeError) as exc:
        print(f"hybriddepth-eval: error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    protocols = max(1, len(sweeps))
    chosen = ", ".join(f"{key}={value}" for key, value in options.items()) if args.backend == "focus_measure" else ""
    described = f"{backend.name} ({chosen})" if chosen else backend.name
    print(f"{dataset.describe()}; backend {described} on {getattr(backend, 'device', 'cpu')}; "
          + ("; ".join(s.describe() for s in sweeps) or "recorded stacks"), file=sys.stderr)
    with tqdm(total=len(dataset) * protocols, unit="stack", disable=True if args.no_progress else None) as bar:
        try:
            evaluation = evaluate(dataset, fusion, sweeps, str(getattr(backend, "device", "cpu")),
                                  args.panels if args.output_dir else (), progress=bar.update)
        except DatasetError as exc:
            print(f"hybriddepth-eval: error: {exc}", file=sys.stderr)
            return 2
    print(markdown_table(evaluation), end="")
    refused = [s for s in evaluation.scores if s.error]
    if refused:
        print(f"{len(refused)} stack(s) refused by the pipeline (scored as no depth), first: "
              f"{refused[0].name}: {refused[0].error}", file=sys.stderr)
    if args.output_dir:
        settings = {key: value for key, value in vars(args).items() if key != "panels"}
        for path in write_report(args.output_dir, evaluation, settings):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
