"""Scoring a depth backend on a dataset, exactly as the fusion node runs it.

Every sample's stack (recorded, or synthesised by a sweep protocol) goes
through `DepthFusion.process`, the node's own per-stack step (validation,
registration, the backend, the range and confidence masks), and the published
depth is compared with the ground truth in the dataset's scoring space
(metres; disparity on DDFF12). A stack the pipeline refuses (registration
failure, no pixel to align on) is what the node would publish nothing for:
the sample is scored as all-unknown (coverage 0) and its error kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data.sample import DepthDataset, DepthSample
from ..data.synthesis import SweepProtocol, synthesize_stack
from ..depth.fusion import DepthFusion
from ..models.alignment import AlignmentError
from ..stack.focal_stack import FocalStackError
from .metrics import error_metrics, mean_metrics

RECORDED = "recorded"
"""The protocol name of datasets that bring their own stacks."""


@dataclass
class SampleScore:
    """One sample under one protocol: its metrics, fusion time and focus distances; `error` when refused."""

    name: str
    protocol: str
    metrics: dict
    fusion_s: float
    focus_distances_m: list[float]
    error: str | None = None


@dataclass
class Panel:
    """What a figure of one sample shows: sharp image, ground truth and prediction in metres, valid pixels."""

    name: str
    protocol: str
    rgb: np.ndarray
    ground_truth_m: np.ndarray
    prediction_m: np.ndarray
    valid_mask: np.ndarray


@dataclass
class Evaluation:
    dataset: str
    backend: str
    space_unit: str
    protocols: list[str]
    scores: list[SampleScore] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)

    def summary(self, protocol: str) -> dict:
        """Mean metrics over the samples of one protocol (core/eval/metrics.py `mean_metrics`)."""
        return mean_metrics(score.metrics for score in self.scores if score.protocol == protocol)


def evaluate(
    dataset: DepthDataset,
    fusion: DepthFusion,
    sweeps: Sequence[SweepProtocol] = (),
    device: str = "cpu",
    panel_samples: Sequence[int] = (),
    progress: Callable[[int], object] | None = None,
) -> Evaluation:
    """Score `fusion` on every sample of `dataset`, under each sweep for RGB-D datasets.

    panel_samples: indices of samples to keep figures of; progress(n) is called after each scored stack.
    """
    if dataset.has_stacks:
        protocols: list[SweepProtocol | None] = [None]
    else:
        if not sweeps:
            raise ValueError(f"{dataset.describe()}: an RGB-D dataset needs at least one sweep protocol")
        protocols = list(sweeps)
    evaluation = Evaluation(
        dataset=dataset.describe(),
        backend=fusion.backend.name,
        space_unit=dataset.space.unit,
        protocols=[p.name if p else RECORDED for p in protocols],
    )
    wanted_panels = set(panel_samples)
    for index in range(len(dataset)):
        sample = dataset[index]
        for protocol in protocols:
            score, prediction_m = _score(sample, protocol, fusion, dataset, device)
            evaluation.scores.append(score)
            if index in wanted_panels:
                evaluation.panels.append(Panel(sample.name, score.protocol, sample.reference_rgb, sample.depth_m,
                                               prediction_m, sample.valid_mask))
            if progress is not None:
                progress(1)
    return evaluation


def _score(sample: DepthSample, protocol: SweepProtocol | None, fusion: DepthFusion, dataset: DepthDataset,
           device: str) -> tuple[SampleScore, np.ndarray]:
    stack = sample.stack if protocol is None else synthesize_stack(sample, protocol, device)
    name = RECORDED if protocol is None else protocol.name
    start_s = time.perf_counter()
    error = None
    try:
        prediction_m = fusion.process(stack).depth_m
    except (FocalStackError, AlignmentError) as exc:
        prediction_m = np.full(sample.depth_m.shape, np.nan, dtype=np.float32)
        error = f"{type(exc).__name__}: {exc}"
    fusion_s = time.perf_counter() - start_s
    space = dataset.space
    metrics = error_metrics(space.from_metres(prediction_m), space.from_metres(sample.depth_m), sample.valid_mask)
    score = SampleScore(sample.name, name, metrics, fusion_s, [float(d) for d in stack.focus_distances_m], error)
    return score, prediction_m
