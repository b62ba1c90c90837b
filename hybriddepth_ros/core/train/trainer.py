"""The training loop of hybriddepth-train: one process, or one per GPU under torchrun (DistributedDataParallel).

- Network: built by HybridDepthBackend's loader from the same files the node
  takes (an official checkpoint, or Depth Anything + DFV / the weight-free
  DFF), with a new refiner when none was loaded; `train_parts` choose what
  learns (the refiner by default, as the paper; DFV optionally, the branch
  the paper names its largest error source). Frozen branches run in eval
  mode and, when their inputs never change, once per sample (frozen_cache.py).
- Steps: global batch `batch_size`, split evenly over the processes; each
  epoch a permutation from (seed, epoch), a short last batch filled from the
  permutation's start; loss L_SILog + 0.5 L_grad (losses.py) in float32,
  the network under autocast at `precision` (GradScaler for fp16 on CUDA).
  A non-finite loss stops training with the step, batch and samples
  (all processes stop together).
- Each epoch: validation loss (each process a share, summed), a log row,
  `last.ckpt` (official layout + optimizer + progress: the resume file),
  `best.ckpt` when the validation loss improved, training_log.csv and
  loss_curve.png, all written atomically by rank 0.
- Resume: `resume` restores weights, optimizer, scaler and progress and goes
  on with the next epoch; batches are the same as without the interruption.
- Under torchrun (WORLD_SIZE > 1): process group on NCCL (CUDA) or gloo
  (CPU); batch-norm running statistics are averaged over the processes at
  each epoch's end; at the end every process compares its weights with the
  saved `last.ckpt`, so replicas that drifted apart are an error, not a
  silent checkpoint of one of them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..data.files import atomic_write, atomic_write_text
from ..data.sample import DepthDataset
from ..data.synthesis import SweepProtocol
from ..depth.device import resolve_device, resolve_precision
from ..depth.hybriddepth import GlobalDepthOutput, HybridDepthBackend, dff_branch_input
from ..models.focus_measure import FocusMeasureDFF
from ..models.hybriddepth import HybridDepthNet
from ..models.weights import WeightsError, load_weights, read_state_dict
from .batches import Batch, BatchBuilder
from .checkpoints import METADATA_KEY, read_resume, save_checkpoint
from .frozen_cache import CachedMetricBranch, CachedRelativeBranch
from .losses import GRADIENT_WEIGHT, SILOG_BETA, hybrid_loss
from .recipe import ADAMW_BETAS, DEFAULT_TRAINABLE, MAX_STEPS, STACK_SIZE, TRAINABLE_PARTS, WEIGHT_DECAY

LOG_COLUMNS = ("epoch", "step", "train_loss", "train_silog", "train_gradient", "val_loss", "val_silog",
               "val_gradient", "lr", "epoch_s", "samples_per_s", "best")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step, batch and samples."""


@dataclass
class TrainConfig:
    """Every choice of a training run (hybriddepth-train's flags); defaults are the paper's recipe."""

    output_dir: str
    lr: float
    batch_size: int
    crop_px: tuple[int, int] | None
    flip: str
    sweep: SweepProtocol | None = None
    checkpoint: str | None = None
    relative_weights: str | None = None
    relative_encoder: str = "vits"
    relative_version: int = 1
    dfv_weights: str | None = None
    metric_branch: str = "dfv"
    alignment: str = "least_squares"
    train_parts: tuple[str, ...] = DEFAULT_TRAINABLE
    epochs: int | None = None
    max_steps: int = MAX_STEPS
    weight_decay: float = WEIGHT_DECAY
    betas: tuple[float, float] = ADAMW_BETAS
    silog_beta: float = SILOG_BETA
    gradient_weight: float = GRADIENT_WEIGHT
    stack_size: int = STACK_SIZE
    relative_input: str = "sharp"
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    cache_frozen: bool = True
    resume: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)
    """Plain facts recorded in the checkpoints' metadata (the dataset's description, the command line)."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.train_parts if p not in TRAINABLE_PARTS]
        if unknown or not self.train_parts:
            raise ValueError(f"train parts must be some of {TRAINABLE_PARTS}, got {list(self.train_parts)}")
        if "dfv" in self.train_parts and self.metric_branch != "dfv":
            raise ValueError("'dfv' cannot train: the metric branch is the weight-free focus measure")
        for name in ("lr", "batch_size", "max_steps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def plain(self) -> dict:
        """The configuration as plain values (JSON / checkpoint metadata)."""
        values = asdict(self)
        values["sweep"] = self.sweep.describe() if self.sweep else None
        return values


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_environment() -> Distributed:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK (one process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def build_network(config: TrainConfig) -> HybridDepthNet:
    """The network from the node's weight options (HybridDepthBackend's loader), with a new refiner if none was loaded."""
    backend = HybridDepthBackend(
        device="cpu", checkpoint_path=config.checkpoint, relative_weights_path=config.relative_weights,
        relative_encoder=config.relative_encoder, relative_version=config.relative_version,
        dfv_weights_path=config.dfv_weights, metric_branch=config.metric_branch, alignment=config.alignment,
    )
    network = backend.model
    if isinstance(network.ScaleMapLearner, GlobalDepthOutput):  # no refiner weights: a new refiner learns
        network = HybridDepthNet(relative_branch=network.depth_anything, metric_branch=network.DFF_model,
                                 alignment=config.alignment)
    return network


class Trainer:
    """Trains `config`'s network on `train_set`, validating on `val_set` every epoch."""

    def __init__(self, config: TrainConfig, train_set: DepthDataset, val_set: DepthDataset,
                 distributed: Distributed | None = None, log=print) -> None:
        self.config = config
        self.train_set, self.val_set = train_set, val_set
        self.dist = distributed or distributed_from_environment()
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        if self.dist.enabled and not dist.is_initialized():
            use_cuda = resolve_device(config.device).type == "cuda"
            dist.init_process_group("nccl" if use_cuda else "gloo")
        device = resolve_device(config.device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.dtype = resolve_precision(config.precision, device)
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"batch size {config.batch_size} must divide evenly over {self.dist.world_size} processes")
        torch.manual_seed(config.seed)  # the new refiner's initial weights, identical in every process
        self.network = build_network(config).to(device)
        self.trainable = self._select_trainable()
        self.train_builder = BatchBuilder(train_set, device, config.stack_size, config.sweep, config.crop_px,
                                          config.flip, config.relative_input, config.seed)
        self.val_builder = BatchBuilder(val_set, device, config.stack_size, config.sweep, config.crop_px, "none",
                                        config.relative_input, config.seed)
        self.run_network, self.caches = self._training_network()
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay)
        use_scaler = self.dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.epoch, self.step, self.best_val_loss, self.best_epoch = 0, 0, math.inf, None
        self.history: list[dict] = []
        if config.resume:
            self._resume(config.resume)
        self.model = self.run_network
        if self.dist.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            # The refiner's deepest fusion block has a skip unit the forward never uses (refinenet4.resConfUnit1,
            # kept for the official layout): DDP must look for unused parameters, as the reference's
            # 'ddp_find_unused_parameters_true' strategy does, or that bucket's gradients are never averaged.
            self.model = torch.nn.parallel.DistributedDataParallel(self.run_network, device_ids=device_ids,
                                                                   find_unused_parameters=True)
        self.output_dir = Path(config.output_dir)

    # ---- set-up -------------------------------------------------------------------------------

    def _select_trainable(self) -> list[torch.nn.Parameter]:
        parts = {"refiner": self.network.ScaleMapLearner, "dfv": self.network.DFF_model,
                 "relative": self.network.depth_anything}
        for name, module in parts.items():
            module.requires_grad_(name in self.config.train_parts)
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(f"nothing to train in {list(self.config.train_parts)}")
        return trainable

    def _training_network(self):
        """The network the steps run: the same modules, frozen branches behind per-sample caches when possible."""
        relative, metric = self.network.depth_anything, self.network.DFF_model
        caches = []
        can_cache = self.config.cache_frozen and self.train_builder.deterministic
        if can_cache and "relative" not in self.config.train_parts:
            relative = CachedRelativeBranch(relative)
            caches.append(relative)
        if can_cache and "dfv" not in self.config.train_parts:
            metric = CachedMetricBranch(metric)
            caches.append(metric)
        if not caches:
            return self.network, []
        return HybridDepthNet(relative_branch=relative, metric_branch=metric, alignment=self.config.alignment,
                              refiner=self.network.ScaleMapLearner), caches

    def _resume(self, path: str) -> None:
        state = read_resume(path)
        ignore = ("DFF_model.",) if isinstance(self.network.DFF_model, FocusMeasureDFF) else ()
        load_weights(self.network, path, ignore_prefixes=ignore)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise WeightsError(f"{path}: its optimizer state does not fit this run's trainable parts: {exc}") from None
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        progress = state["progress"]
        self.epoch, self.step = int(progress["epoch"]), int(progress["step"])
        self.best_val_loss = float(progress["best_val_loss"])
        self.best_epoch = progress.get("best_epoch")
        self.history = [dict(row) for row in progress.get("history", [])]
        self.log(f"resumed from {path}: epoch {self.epoch}, step {self.step}, best validation loss "
                 f"{self.best_val_loss:.4f}")

    # ---- one step ---------------------------------------------------------------------------

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, batch: Batch, split: str, model) -> torch.Tensor:
        keys = [(split, index) for index in batch.indices]
        for cache in self.caches:
            cache.keys = keys
        dff_input = None if batch.focal_stack is None else dff_branch_input(batch.focal_stack, self.config.metric_branch)
        with self._autocast():
            output = model(batch.aif, dff_input, batch.focus_distances_m, batch.stack_valid)
        return output.metric_depth.float()

    def _needs_inputs(self, indices, split: str) -> bool:
        return not self.caches or any(cache.missing([(split, i) for i in indices]) for cache in self.caches)

    def _set_modes(self, training: bool) -> None:
        self.network.eval()
        if training:
            for name, module in (("refiner", self.network.ScaleMapLearner), ("dfv", self.network.DFF_model),
                                 ("relative", self.network.depth_anything)):
                if name in self.config.train_parts:
                    module.train()

    def train_step(self, indices, epoch: int, batch_number: int) -> dict:
        batch = self.train_builder.build(indices, epoch, train=True, with_inputs=self._needs_inputs(indices, "train"))
        prediction = self._forward(batch, "train", self.model)
        terms = hybrid_loss(prediction, batch.depth_m, batch.valid, self.config.gradient_weight, self.config.silog_beta)
        self._stop_if_not_finite(terms.total, epoch, batch_number, batch.names)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(terms.total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms.total.backward()
            self.optimizer.step()
        return {**terms.as_floats(), "samples": len(batch)}

    def _stop_if_not_finite(self, loss: torch.Tensor, epoch: int, batch_number: int, names: list[str]) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.device)
        if self.dist.enabled:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            mine = (f"loss {loss.item()} on samples {names}" if not torch.isfinite(loss).item()
                    else "another process's batch")
            raise NonFiniteLossError(
                f"non-finite training loss at step {self.step + 1} (epoch {epoch + 1}, batch {batch_number + 1} "
                f"of the epoch): {mine}; the last saved checkpoint is kept"
            )

    # ---- epochs -------------------------------------------------------------------------------

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's sample indices of each batch of `epoch` (global batches split by rank)."""
        count, batch = len(self.train_set), self.config.batch_size
        order = np.random.default_rng([self.config.seed, epoch]).permutation(count)
        steps = math.ceil(count / batch)
        filled = np.resize(order, steps * batch)  # a short last batch is filled from the permutation's start
        return [filled[s * batch:(s + 1) * batch][self.dist.rank::self.dist.world_size].tolist() for s in range(steps)]

    def validate(self) -> dict:
        """Mean validation loss terms over the validation set (each process a share, summed)."""
        self._set_modes(training=False)
        mine = list(range(self.dist.rank, len(self.val_set), self.dist.world_size))
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for index in mine:
                batch = self.val_builder.build([index], 0, train=False, with_inputs=self._needs_inputs([index], "val"))
                prediction = self._forward(batch, "val", self.run_network)
                terms = hybrid_loss(prediction, batch.depth_m, batch.valid, self.config.gradient_weight,
                                    self.config.silog_beta)
                sums += torch.tensor([float(terms.total), float(terms.silog), float(terms.gradient), 1.0],
                                     dtype=torch.float64, device=self.device)
        if self.dist.enabled:
            dist.all_reduce(sums)
        count = max(sums[3].item(), 1.0)
        return {"loss": sums[0].item() / count, "silog": sums[1].item() / count, "gradient": sums[2].item() / count}

    def _epochs_to_run(self) -> int:
        steps_per_epoch = math.ceil(len(self.train_set) / self.config.batch_size)
        by_steps = math.ceil(self.config.max_steps / steps_per_epoch)
        return min(self.config.epochs, by_steps) if self.config.epochs is not None else by_steps

    def run(self) -> dict:
        """Train to the configured end; return the summary (best validation loss and epoch, files)."""
        from tqdm import tqdm

        total_epochs = self._epochs_to_run()
        self.log(f"training {list(self.config.train_parts)} on {self.train_set.describe()}; validation on "
                 f"{self.val_set.describe()}; {total_epochs} epochs, global batch {self.config.batch_size} over "
                 f"{self.dist.world_size} process(es) on {self.device}, lr {self.config.lr:g}"
                 + ("; frozen branches cached per sample" if self.caches else ""))
        while self.epoch < total_epochs and self.step < self.config.max_steps:
            epoch = self.epoch
            self._set_modes(training=True)
            started = time.perf_counter()
            sums, samples = {"loss": 0.0, "silog": 0.0, "gradient": 0.0}, 0
            batches = self.epoch_batches(epoch)
            bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{total_epochs}", unit="step",
                       disable=not (self.config.progress and self.dist.is_main) or None, leave=False, file=sys.stderr)
            for number, indices in enumerate(batches):
                if self.step >= self.config.max_steps:
                    break
                result = self.train_step(indices, epoch, number)
                self.step += 1
                for key in sums:
                    sums[key] += result[key] * result["samples"]
                samples += result["samples"]
                bar.update(1)
                bar.set_postfix(loss=f"{result['loss']:.4f}")
            bar.close()
            if self.dist.enabled:
                self._average_buffers()
            epoch_s = time.perf_counter() - started
            train = self._reduce_means(sums, samples)
            val = self.validate()
            self.epoch = epoch + 1
            improved = val["loss"] < self.best_val_loss
            if improved:
                self.best_val_loss, self.best_epoch = val["loss"], self.epoch
            row = {
                "epoch": self.epoch, "step": self.step, "train_loss": train["loss"], "train_silog": train["silog"],
                "train_gradient": train["gradient"], "val_loss": val["loss"], "val_silog": val["silog"],
                "val_gradient": val["gradient"], "lr": self.optimizer.param_groups[0]["lr"], "epoch_s": epoch_s,
                "samples_per_s": train["samples"] / epoch_s if epoch_s > 0 else float("nan"), "best": int(improved),
            }
            self.history.append(row)
            self.log(f"epoch {self.epoch}: step {self.step}, train loss {train['loss']:.4f}, validation loss "
                     f"{val['loss']:.4f}{' (best)' if improved else ''}, {row['samples_per_s']:.2f} samples/s")
            self._save_epoch(improved)
        summary = {"epochs": self.epoch, "steps": self.step, "best_val_loss": self.best_val_loss,
                   "best_epoch": self.best_epoch, "output_dir": str(self.output_dir)}
        if self.dist.enabled:
            self._check_replicas_equal_saved_checkpoint()
        return summary

    def _average_buffers(self) -> None:
        """Batch-norm running statistics averaged over the processes (DDP only shares rank 0's at each forward's
        start, so after an epoch every process holds its own last update): replicas validate and save the same."""
        for buffer in self.network.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.dist.world_size
            else:
                dist.broadcast(buffer, src=0)

    def _reduce_means(self, sums: dict, samples: int) -> dict:
        values = torch.tensor([sums["loss"], sums["silog"], sums["gradient"], float(samples)], dtype=torch.float64,
                              device=self.device)
        if self.dist.enabled:
            dist.all_reduce(values)
        count = max(values[3].item(), 1.0)
        return {"loss": values[0].item() / count, "silog": values[1].item() / count,
                "gradient": values[2].item() / count, "samples": values[3].item()}

    # ---- files ------------------------------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "created_by": "hybriddepth-train",
            "metric_branch": self.config.metric_branch,
            "relative_encoder": self.config.relative_encoder,
            "relative_version": self.config.relative_version,
            "alignment": self.config.alignment,
            "trained_parts": list(self.config.train_parts),
            "epoch": self.epoch,
            "step": self.step,
            "val_loss": self.history[-1]["val_loss"] if self.history else None,
            "config": _plain(self.config.plain()),
        }

    def _save_epoch(self, improved: bool) -> None:
        if self.dist.is_main:
            progress = {"epoch": self.epoch, "step": self.step, "best_val_loss": self.best_val_loss,
                        "best_epoch": self.best_epoch, "history": self.history}
            state = {"optimizer": self.optimizer.state_dict(), "progress": progress}
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
            metadata = self.metadata()
            save_checkpoint(self.output_dir / "last.ckpt", self.network, metadata, state)
            if improved:
                save_checkpoint(self.output_dir / "best.ckpt", self.network, metadata)
            atomic_write_text(self.output_dir / "training_log.csv", self._log_csv())
            atomic_write(self.output_dir / "loss_curve.png", self._draw_loss_curve)
        if self.dist.enabled:
            dist.barrier()

    def _log_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        return buffer.getvalue()

    def _draw_loss_curve(self, path: Path) -> None:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        epochs = [row["epoch"] for row in self.history]
        figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
        axis.plot(epochs, [row["train_loss"] for row in self.history], marker="o", label="training")
        axis.plot(epochs, [row["val_loss"] for row in self.history], marker="o", label="validation")
        if self.best_epoch is not None:
            axis.axvline(self.best_epoch, color="0.6", linestyle="--", label=f"best (epoch {self.best_epoch})")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_ylabel("L_SILog + 0.5 L_grad")
        axis.legend()
        axis.grid(alpha=0.3)
        figure.savefig(path, format="png", dpi=90)
        plt.close(figure)

    def _check_replicas_equal_saved_checkpoint(self) -> None:
        """Every process's weights must equal what rank 0 saved in last.ckpt; report, or raise on a mismatch."""
        saved = read_state_dict(self.output_dir / "last.ckpt")
        mine = {key: value.detach().cpu() for key, value in self.network.state_dict().items()}
        differing = [key for key, value in mine.items() if not torch.equal(saved["model." + key], value.contiguous())]
        flag = torch.tensor([float(len(differing))], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise RuntimeError(f"process {self.dist.rank}: {len(differing)} tensors differ from the saved "
                               f"checkpoint (first: {differing[:3]}): the replicas drifted apart")
        self.log(f"all {self.dist.world_size} processes hold exactly the weights saved in {self.output_dir / 'last.ckpt'}")

    def close(self) -> None:
        if self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # ---- throughput -------------------------------------------------------------------------

    def benchmark(self, steps: int) -> dict:
        """Training throughput: `steps` steps after one warm-up, no files written.

        Build the trainer with cache_frozen=False for the full cost of a step (frozen branches run every step).
        """
        self._set_modes(training=True)
        batches = self.epoch_batches(0)
        self.train_step(batches[0], 0, 0)  # warm-up: allocations, cuDNN autotuning
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        samples = 0
        for number in range(steps):
            indices = batches[(number + 1) % len(batches)]
            samples += self.train_step(indices, 0, number)["samples"]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        return {"steps": steps, "samples": samples * self.dist.world_size, "seconds": seconds,
                "samples_per_s": samples * self.dist.world_size / seconds}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


__all__ = ["METADATA_KEY", "NonFiniteLossError", "TrainConfig", "Trainer", "build_network"]
