"""hybriddepth-train: fine-tune HybridDepth (the refiner by default) on NYU, DDFF12, your recordings or a bag.

Defaults are the paper's recipe (core/train/recipe.py): NYU's for RGB-D data
(stacks synthesised on the device), DDFF12's for real focal stacks; every
choice is a flag. Writes to --output-dir: best.ckpt (lowest validation loss)
and last.ckpt (resume file), both in the official key layout that
depth_fusion_node loads strictly, training_log.csv and loss_curve.png.

    hybriddepth-train nyu_depth_v2_labeled.mat --split train --checkpoint NYUBest5-DFV-Trained.ckpt
    hybriddepth-train recordings/ --relative-weights depth_anything_vits14.pth --metric-branch focus_measure
    hybriddepth-train recordings/ ... --resume train_output/last.ckpt
    torchrun --nproc_per_node 4 -m hybriddepth_ros.tools.train nyu/ --split train ...   (one process per GPU)
    hybriddepth-train --dataset simulated --scenes 16 --relative-weights da.pth --metric-branch focus_measure \\
        --benchmark-steps 5        (training throughput, samples/s; nothing written)
Exit status 2 for unusable input (naming the file), 1 when training stops on a non-finite loss.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..core.data import DatasetError
from ..core.data.sample import Subset
from ..core.data.synthesis import SWEEP_PROTOCOLS, SweepProtocol
from ..core.models.weights import WeightsError
from ..core.train.batches import FLIPS, RELATIVE_INPUTS
from ..core.train.losses import GRADIENT_WEIGHT, SILOG_BETA
from ..core.train.recipe import ADAMW_BETAS, DEFAULT_TRAINABLE, MAX_STEPS, STACK_SIZE, TRAINABLE_PARTS, WEIGHT_DECAY, recipe_for
from ..core.train.trainer import NonFiniteLossError, TrainConfig, Trainer, distributed_from_environment
from .evaluate import add_dataset_arguments, open_dataset_from_args

DEFAULT_VAL_FRACTION = 0.1


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hybriddepth-train", description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=None, help="training dataset (none for --dataset simulated)")
    add_dataset_arguments(parser)
    parser.add_argument("--val-path", default=None, help="validation dataset (default: a held-out share of training)")
    add_dataset_arguments(parser, prefix="val")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                        help="share of the training samples held out for validation without --val-path")
    parser.add_argument("--output-dir", default="train_output")
    model = parser.add_argument_group("network (the fusion node's weight options)")
    model.add_argument("--checkpoint", default=None, help="official-layout .ckpt to start from")
    model.add_argument("--relative-weights", default=None, help="Depth Anything V1/V2 file for the relative branch")
    model.add_argument("--relative-encoder", default="vits")
    model.add_argument("--relative-version", type=int, default=1)
    model.add_argument("--dfv-weights", default=None, help="DFV file for the DFF branch")
    model.add_argument("--metric-branch", default="dfv", help="dfv | focus_measure")
    model.add_argument("--alignment", default="least_squares", help="least_squares | confidence_weighted")
    model.add_argument("--train", nargs="+", choices=TRAINABLE_PARTS, default=list(DEFAULT_TRAINABLE),
                       help="parts that learn (the paper: refiner; dfv is the paper's largest error source)")
    recipe = parser.add_argument_group("recipe (default: the paper's for the dataset)")
    recipe.add_argument("--lr", type=float, default=None, help="NYU recipe 3e-4, DDFF12 recipe 1e-5")
    recipe.add_argument("--batch-size", type=int, default=None, help="global batch: NYU 24, DDFF12 8")
    recipe.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    recipe.add_argument("--betas", type=float, nargs=2, default=ADAMW_BETAS)
    recipe.add_argument("--epochs", type=int, default=None, help="at most this many epochs")
    recipe.add_argument("--max-steps", type=int, default=MAX_STEPS)
    recipe.add_argument("--silog-beta", type=float, default=SILOG_BETA)
    recipe.add_argument("--gradient-weight", type=float, default=GRADIENT_WEIGHT)
    recipe.add_argument("--stack-size", type=int, default=STACK_SIZE)
    recipe.add_argument("--sweep", choices=SWEEP_PROTOCOLS, default="paper", help="RGB-D: where stacks are focused")
    recipe.add_argument("--sweep-near-m", type=float, default=None)
    recipe.add_argument("--sweep-far-m", type=float, default=None)
    recipe.add_argument("--crop", type=int, nargs=2, default=None, metavar=("H", "W"), help="NYU none, DDFF12 224 224")
    recipe.add_argument("--no-crop", action="store_true")
    recipe.add_argument("--flip", choices=FLIPS, default=None, help="NYU none, DDFF12 both")
    recipe.add_argument("--relative-input", choices=RELATIVE_INPUTS, default="sharp",
                        help="RGB-D: the relative branch sees the sharp image (paper) or the nearest-focus frame")
    run = parser.add_argument_group("run")
    run.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast; fp16 uses a grad scaler)")
    run.add_argument("--device", default="auto")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-cache", action="store_true", help="run frozen branches every step")
    run.add_argument("--resume", default=None, help="a last.ckpt to continue from")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--benchmark-steps", type=int, default=None,
                     help="time this many training steps, print samples/s and exit (nothing written)")
    return parser.parse_args(argv)


def datasets(args: argparse.Namespace):
    train = open_dataset_from_args(args, args.path, stack_size=None)
    if args.val_path is not None or args.val_dataset == "simulated":
        return train, open_dataset_from_args(args, args.val_path, stack_size=None, prefix="val")
    if len(train) < 2:
        raise DatasetError(f"{train.describe()}: one sample cannot be both trained and held out; give --val-path")
    order = np.random.default_rng(args.seed).permutation(len(train))
    held_out = min(len(train) - 1, max(1, round(len(train) * args.val_fraction)))
    return (Subset(train, sorted(order[held_out:]), "training split"),
            Subset(train, sorted(order[:held_out]), "validation split"))


def make_config(args: argparse.Namespace, train_set) -> TrainConfig:
    recipe = recipe_for(train_set)
    sweep = None
    if not train_set.has_stacks:
        if args.sweep == "fixed":
            near = args.sweep_near_m if args.sweep_near_m is not None else train_set.fixed_sweep_m[0]
            far = args.sweep_far_m if args.sweep_far_m is not None else train_set.fixed_sweep_m[1]
            sweep = SweepProtocol("fixed", args.stack_size, near, far)
        else:
            sweep = SweepProtocol("paper", args.stack_size)
    crop = None if args.no_crop else (tuple(args.crop) if args.crop else recipe.crop_px)
    return TrainConfig(
        output_dir=args.output_dir, lr=args.lr or recipe.lr, batch_size=args.batch_size or recipe.batch_size,
        crop_px=crop, flip=args.flip or recipe.flip, sweep=sweep, checkpoint=args.checkpoint,
        relative_weights=args.relative_weights, relative_encoder=args.relative_encoder,
        relative_version=args.relative_version, dfv_weights=args.dfv_weights, metric_branch=args.metric_branch,
        alignment=args.alignment, train_parts=tuple(args.train), epochs=args.epochs, max_steps=args.max_steps,
        weight_decay=args.weight_decay, betas=tuple(args.betas), silog_beta=args.silog_beta,
        gradient_weight=args.gradient_weight, stack_size=args.stack_size, relative_input=args.relative_input,
        precision=args.precision, device=args.device, seed=args.seed,
        cache_frozen=not args.no_cache and args.benchmark_steps is None, resume=args.resume,
        progress=not args.no_progress, extra={"recipe": recipe.name, "train_set": train_set.describe()},
    )


def node_command(config: TrainConfig, checkpoint: Path) -> str:
    """The fusion node's parameters that run the trained network as it was trained."""
    params = ["backend:=hybriddepth", f"checkpoint_path:={checkpoint}"]
    if config.metric_branch != "dfv":
        params.append(f"metric_branch:={config.metric_branch}")
    if config.relative_weights and (config.relative_version != 1 or config.relative_encoder != "vits"):
        params += [f"relative_weights_path:={config.relative_weights}", f"relative_encoder:={config.relative_encoder}",
                   f"relative_version:={config.relative_version}"]
    if config.alignment != "least_squares":
        params.append(f"alignment:={config.alignment}")
    return "ros2 run hybriddepth_ros depth_fusion_node --ros-args " + " ".join(f"-p {p}" for p in params)


def main(argv=None) -> int:
    args = parse_args(argv)
    is_main = distributed_from_environment().is_main
    try:
        train_set, val_set = datasets(args)
        config = make_config(args, train_set)
        trainer = Trainer(config, train_set, val_set, log=lambda text: print(text, file=sys.stderr))
    except (DatasetError, WeightsError, ValueError) as exc:
        print(f"hybriddepth-train: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.benchmark_steps is not None:
            result = trainer.benchmark(args.benchmark_steps)
            if is_main:
                crop = "x".join(map(str, config.crop_px)) + " crop" if config.crop_px else "no crop"
                print(f"training throughput: {result['samples_per_s']:.3f} samples/s ({result['samples']} samples in "
                      f"{result['seconds']:.2f} s; global batch {config.batch_size}, {train_set.describe()}, {crop}, {config.stack_size} "
                      f"frames, trains {'+'.join(config.train_parts)}, {config.precision} on {trainer.device}, "
                      f"{trainer.dist.world_size} process(es))")
            return 0
        summary = trainer.run()
    except NonFiniteLossError as exc:
        print(f"hybriddepth-train: stopped: {exc}", file=sys.stderr)
        return 1
    except DatasetError as exc:
        print(f"hybriddepth-train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        trainer.close()
    if is_main:
        best = Path(config.output_dir) / "best.ckpt"
        print(json.dumps(summary, indent=2))
        print(f"run the fusion node with it:\n  {node_command(config, best)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
