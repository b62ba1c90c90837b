"""An evaluation for people and for scripts: Markdown table, per-sample CSV, summary JSON, PNG panels.

All files are written atomically (core/data/files.py) and only after the
whole evaluation has run, so a failed run leaves no partial report.
Panels show RGB | ground truth | prediction | absolute error, each depth with a
colour bar in metres (NaN: no depth, drawn grey).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from ..data.files import atomic_write, atomic_write_text
from .evaluation import Evaluation
from .metrics import ERROR_METRICS

COLUMN_TITLES = {
    "abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE", "rmse_log": "RMSE-log", "log10": "log10",
    "silog": "SILog", "delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "mse": "MSE",
}


def markdown_table(evaluation: Evaluation) -> str:
    """One row per protocol: the mean metrics over images, coverage and how many images were scored."""
    header = ["backend", "stacks", "images", *[COLUMN_TITLES[m] for m in ERROR_METRICS], "coverage"]
    lines = [
        f"{evaluation.dataset}; metrics on {evaluation.space_unit}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for protocol in evaluation.protocols:
        summary = evaluation.summary(protocol)
        cells = [evaluation.backend, protocol, f"{summary['images_scored']}/{summary['images']}"]
        cells += [_number(summary[m]) for m in ERROR_METRICS] + [_number(summary["coverage"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def per_sample_csv(evaluation: Evaluation) -> str:
    columns = ["sample", "protocol", *ERROR_METRICS, "coverage", "count", "fusion_s", "focus_distances_m", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for score in evaluation.scores:
        writer.writerow([
            score.name, score.protocol, *[repr(score.metrics[m]) for m in ERROR_METRICS],
            repr(score.metrics["coverage"]), score.metrics["count"], f"{score.fusion_s:.4f}",
            " ".join(f"{d:.6g}" for d in score.focus_distances_m), score.error or "",
        ])
    return buffer.getvalue()


def summary_json(evaluation: Evaluation, settings: dict | None = None) -> str:
    """Summary per protocol plus the settings the run used; NaN written as null (strict JSON)."""
    document = {
        "dataset": evaluation.dataset,
        "backend": evaluation.backend,
        "scored_on": evaluation.space_unit,
        "settings": settings or {},
        "summary": {protocol: evaluation.summary(protocol) for protocol in evaluation.protocols},
        "refused_stacks": [{"sample": s.name, "protocol": s.protocol, "error": s.error}
                           for s in evaluation.scores if s.error],
    }
    return json.dumps(_strict(document), indent=2) + "\n"


def _strict(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def write_report(output_dir: str | Path, evaluation: Evaluation, settings: dict | None = None) -> list[Path]:
    """per_sample.csv, summary.json, summary.md and panels/<sample>_<protocol>.png under `output_dir`."""
    output_dir = Path(output_dir)
    written = [
        atomic_write_text(output_dir / "per_sample.csv", per_sample_csv(evaluation)),
        atomic_write_text(output_dir / "summary.json", summary_json(evaluation, settings)),
        atomic_write_text(output_dir / "summary.md", markdown_table(evaluation)),
    ]
    for panel in evaluation.panels:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{panel.name}_{panel.protocol}")
        written.append(atomic_write(output_dir / "panels" / f"{stem}.png", lambda path, p=panel: _draw_panel(p, path)))
    return written


def _draw_panel(panel, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    truth = np.where(panel.valid_mask, panel.ground_truth_m, np.nan)
    error = np.abs(panel.prediction_m - truth)
    finite = np.concatenate([truth[np.isfinite(truth)], panel.prediction_m[np.isfinite(panel.prediction_m)]])
    low, high = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (0.0, 1.0)
    cmap = matplotlib.colormaps["turbo"].with_extremes(bad="0.6")
    error_cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
    height, width = truth.shape
    figure, axes = plt.subplots(1, 4, figsize=(16, 4.2 * height / width + 0.8), constrained_layout=True)
    axes[0].imshow(panel.rgb)
    axes[0].set_title("RGB")
    for axis, image, title in ((axes[1], truth, "ground truth (m)"), (axes[2], panel.prediction_m, "prediction (m)")):
        shown = axis.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=low, vmax=max(high, low + 1e-6))
        axis.set_title(title)
        figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02, label="m")
    error_high = float(np.nanpercentile(error, 99)) if np.isfinite(error).any() else 1.0
    shown = axes[3].imshow(np.ma.masked_invalid(error), cmap=error_cmap, vmin=0.0, vmax=max(error_high, 1e-6))
    axes[3].set_title("|error| (m)")
    figure.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02, label="m")
    for axis in axes:
        axis.axis("off")
    figure.suptitle(f"{panel.name} ({panel.protocol})")
    figure.savefig(path, format="png", dpi=80)
    plt.close(figure)
