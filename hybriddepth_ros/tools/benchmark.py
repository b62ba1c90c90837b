"""Per-stage latency and peak memory of the HybridDepth backend (deterministic random weights) or the weight-free one.

    python -m hybriddepth_ros.tools.benchmark --device auto --frames 5 --height 480 --width 640 \
        --precision fp32 --repeats 3
    python -m hybriddepth_ros.tools.benchmark --backend focus_measure --repeats 9 [--stack DIR]

The weight-free mode times the whole fusion path of the default backend on a
stack that needs registration (registration, focus measure, peak fit,
densification, masks), warm = median of `--repeats` calls: the stack in
folder DIR (e.g. ../shared/data/pixel6pro_stack) resized to the given size,
or else a synthetic textured stack with hand-held warps between its frames.
It also prints the machine's load average, since timings on a shared machine
are only as good as the share the benchmark got.

Runs the full backend through DepthFusion, the fusion node's own path
(validation, preprocessing, relative branch, DFF, alignment, refinement,
resize back, masks), on a synthetic textured focal stack of the given size,
which is also the working size. The first call is reported as "cold" (it pays
for lazy initialisation, allocator growth, cuDNN autotuning); "warm" is the
median of `--repeats` further calls. Weights are random but seeded, so no
download is needed; latency does not depend on their values.

Each network stage's work is also counted in GFLOP (a multiply-add is 2 FLOP;
convolutions, matrix products and attention, which are nearly all of it; the
alignment has none of these), a device-independent figure: with the warm time
it gives the throughput reached.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..core.depth.base import DepthResult
from ..core.depth.fusion import DepthFusion
from ..core.depth.hybriddepth import HybridDepthBackend
from ..core.models.hybriddepth import STAGES, HybridDepthNet
from ..core.stack.camera import CameraIntrinsics
from ..core.stack.focal_stack import FocalStack, diopter_sweep

WEIGHT_SEED = 0
END_TO_END = "end_to_end"

# ---------------------------------------------------------------------------
# Downstream stages (hook): work done on the depth result after estimation,
# such as ROS message conversion or point-cloud generation. Each is timed like
# the network stages and included in end to end. Add entries to
# `downstream_stages()`; each takes (stack, depth_result) and may return anything.
# ---------------------------------------------------------------------------
DownstreamStage = Callable[[FocalStack, DepthResult], object]


def downstream_stages() -> dict[str, DownstreamStage]:
    """The fusion node's work around estimation: message conversion (with ROS messages) and the cloud."""
    from ..core.depth.pointcloud import back_project

    stages: dict[str, DownstreamStage] = {}
    try:
        from std_msgs.msg import Header

        from hybriddepth_ros.msg import FocalStack as FocalStackMsg

        from ..nodes import conversions
    except ImportError:  # no ROS messages: the core stages only
        conversions = None
    incoming: dict[int, object] = {}

    if conversions is not None:

        def message_conversion(stack: FocalStack, result: DepthResult) -> object:
            """FocalStack message in (built once, untimed on the sweep side), depth/confidence/info out."""
            msg = incoming.get(id(stack))
            if msg is None:
                msg = incoming.setdefault(id(stack), conversions.focal_stack_to_msg(stack, FocalStackMsg))
            conversions.focal_stack_from_msg(msg)
            header = Header(frame_id=stack.frame_id)
            conversions.float_image(result.depth_m, header)
            conversions.float_image(result.confidence, header)
            return conversions.intrinsics_to_camera_info(stack.intrinsics, header)

        def point_cloud(stack: FocalStack, result: DepthResult) -> object:
            points = back_project(result.depth_m, stack.intrinsics)
            return conversions.organised_cloud(points, stack.reference_frame, Header(frame_id=stack.frame_id))

        stages["message_conversion"] = message_conversion
    else:

        def point_cloud(stack: FocalStack, result: DepthResult) -> object:
            return back_project(result.depth_m, stack.intrinsics)

    stages["point_cloud"] = point_cloud
    return stages


# ---------------------------------------------------------------------------


@dataclass
class BenchmarkReport:
    device: str
    precision: str
    frames: int
    height_px: int
    width_px: int
    repeats: int
    cold_s: dict[str, float]
    warm_median_s: dict[str, float]
    peak_memory_mib: float
    peak_memory_kind: str
    gflops: dict[str, float]
    warm_min_s: dict[str, float] | None = None


def synthetic_stack(frames: int, height_px: int, width_px: int, seed: int = 0) -> FocalStack:
    """A textured stack with a diopter-spaced sweep from 0.3 m to 3 m; frames blur progressively."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height_px, width_px, 3), dtype=np.uint8)
    stack_frames = np.stack([cv2.GaussianBlur(texture, (0, 0), 0.5 + 0.7 * k) for k in range(frames)])
    f_px = 0.8 * width_px
    intrinsics = CameraIntrinsics(f_px, f_px, (width_px - 1) / 2, (height_px - 1) / 2, width_px, height_px)
    return FocalStack(frames=stack_frames, focus_distances_m=diopter_sweep(0.3, 3.0, frames), intrinsics=intrinsics)


def unregistered_stack(frames: int, height_px: int, width_px: int, seed: int = 0) -> FocalStack:
    """`synthetic_stack` with each frame shifted, rotated and zoomed a little more than the last, as hand-held."""
    stack = synthetic_stack(frames, height_px, width_px, seed)
    centre = ((width_px - 1) / 2.0, (height_px - 1) / 2.0)
    warped = []
    for index, frame in enumerate(stack.frames):
        motion = cv2.getRotationMatrix2D(centre, 0.3 * index, 1.0 + 0.006 * index)
        motion[:, 2] += (1.5 * index, -1.0 * index)
        warped.append(cv2.warpAffine(frame, motion, (width_px, height_px), borderMode=cv2.BORDER_REFLECT))
    return FocalStack(np.stack(warped), stack.focus_distances_m, stack.intrinsics, registered=False)


def folder_stack(folder: str, height_px: int, width_px: int) -> FocalStack:
    """The stack in `folder` (directory-backend layout) resized to width_px x height_px, unregistered."""
    from ..core.capture.directory import DirectoryCapture

    return DirectoryCapture(folder, width_px=width_px, height_px=height_px).capture_stack()


def run_weight_free_benchmark(
    device: str = "auto",
    frames: int = 5,
    height_px: int = 480,
    width_px: int = 640,
    repeats: int = 9,
    stack_folder: str | None = None,
    downstream: dict[str, DownstreamStage] | None = None,
) -> BenchmarkReport:
    """The default weight-free backend through DepthFusion on a stack that needs registration."""
    from ..core.depth.focus_measure import FocusMeasureBackend

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    stack = folder_stack(stack_folder, height_px, width_px) if stack_folder else unregistered_stack(frames, height_px, width_px)
    backend = FocusMeasureBackend(device=device)
    fusion = DepthFusion(backend)
    downstream = {} if downstream is None else downstream
    cold_s = timed_call(fusion, stack, downstream)
    warm_runs = []
    for _ in range(repeats):
        cpu_start_s = time.process_time()
        warm_runs.append(timed_call(fusion, stack, downstream))
        warm_runs[-1][PROCESS_CPU] = time.process_time() - cpu_start_s
    cold_s[PROCESS_CPU] = float("nan")
    warm_median_s = {name: statistics.median(run.get(name, 0.0) for run in warm_runs) for name in cold_s}
    warm_min_s = {name: min(run.get(name, 0.0) for run in warm_runs) for name in cold_s}
    if backend.device.type == "cuda":
        peak_mib, kind = torch.cuda.max_memory_allocated(backend.device) / 2**20, "CUDA max_memory_allocated"
    else:
        peak_mib, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    return BenchmarkReport(
        device=str(backend.device), precision="float32", frames=stack.num_frames, height_px=stack.height,
        width_px=stack.width, repeats=repeats, cold_s=cold_s, warm_median_s=warm_median_s,
        peak_memory_mib=peak_mib, peak_memory_kind=kind, gflops={}, warm_min_s=warm_min_s,
    )


PROCESS_CPU = "process_cpu"
"""CPU time of the whole process per warm call (all threads): on a shared machine, what the call cost
even when it waited for a core."""
WEIGHT_FREE_STAGES = ("registration", "focus_measure", "peak_fit", "densify", "masks")


def cpu_description(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name with its family and model numbers.

    The name alone ("AMD EPYC") named two kinds of machine in this project's
    sessions: on one (family 25 model 17) the Pixel stack's weight-free path
    took 55 ms (median), on the other 86-115 ms. Figures compare only between
    runs that print the same CPU.
    """
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    import platform

    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{name}, family {fields['cpu family']} model {fields['model']}"
    return name


def format_weight_free_report(report: BenchmarkReport, source: str) -> str:
    import os

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"weight-free benchmark: {report.frames} frames, {report.width_px}x{report.height_px} px ({source}), "
        f"device {report.device}{_cpu_note(report.device)}, warm = median of {report.repeats}; "
        f"load average {load} on {os.cpu_count()} CPUs",
        f"{'stage':<20}{'cold ms':>10}{'warm ms':>10}{'fastest':>10}",
    ]
    order = [s for s in WEIGHT_FREE_STAGES if s in report.cold_s]
    order += [s for s in report.cold_s if s not in order and s not in ("fusion_total", END_TO_END, PROCESS_CPU)]
    for stage in (*order, "fusion_total", END_TO_END, PROCESS_CPU):
        if stage in report.cold_s:
            fastest_ms = (report.warm_min_s or report.warm_median_s)[stage] * 1e3
            lines.append(f"{stage:<20}{report.cold_s[stage] * 1e3:>10.1f}{report.warm_median_s[stage] * 1e3:>10.1f}"
                         f"{fastest_ms:>10.1f}")
    lines.append(f"peak memory: {report.peak_memory_mib:.0f} MiB ({report.peak_memory_kind})")
    return "\n".join(lines)


def seeded_network() -> HybridDepthNet:
    """HybridDepthNet with its default initialisation drawn from a fixed seed."""
    torch.manual_seed(WEIGHT_SEED)
    return HybridDepthNet()


def network_gflops(backend: HybridDepthBackend, stack: FocalStack) -> dict[str, float]:
    """GFLOP of each network stage for one forward over `stack` (at the working size), counted by torch."""
    gflops: dict[str, float] = {}

    @contextlib.contextmanager
    def counted(stage: str):
        with FlopCounterMode(display=False) as counter:
            yield
        gflops[stage] = counter.get_total_flops() / 1e9

    inputs = backend.network_inputs(backend.working_stack(stack))
    with torch.inference_mode():
        backend.model(*inputs, stage=counted)
    return gflops


def timed_call(fusion: DepthFusion, stack: FocalStack, downstream: dict[str, DownstreamStage]) -> dict[str, float]:
    """Seconds per stage of one fusion (the node's own path) plus downstream stages, and end to end."""
    start_s = time.perf_counter()
    fused = fusion.process(stack)
    result = DepthResult(depth_m=fused.depth_m, confidence=fused.confidence, timings_s=fused.timings_s)
    timings_s = dict(fused.timings_s)
    for name, stage in downstream.items():
        stage_start_s = time.perf_counter()
        stage(stack, result)
        timings_s[name] = time.perf_counter() - stage_start_s
    timings_s[END_TO_END] = time.perf_counter() - start_s
    return timings_s


def run_benchmark(
    device: str = "auto",
    frames: int = 5,
    height_px: int = 480,
    width_px: int = 640,
    precision: str = "fp32",
    repeats: int = 3,
    downstream: dict[str, DownstreamStage] | None = None,
) -> BenchmarkReport:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    downstream = downstream_stages() if downstream is None else downstream
    backend = HybridDepthBackend(
        device=device, precision=precision, working_size=(height_px, width_px), model=seeded_network()
    )
    # Every pixel published, so the downstream stages see the whole image as the node would at threshold 0.
    fusion = DepthFusion(backend, confidence_threshold=0.0)
    stack = synthetic_stack(frames, height_px, width_px)
    on_cuda = backend.device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(backend.device)
    cold_s = timed_call(fusion, stack, downstream)
    warm_runs = [timed_call(fusion, stack, downstream) for _ in range(repeats)]
    warm_median_s = {name: statistics.median(run.get(name, 0.0) for run in warm_runs) for name in cold_s}
    if on_cuda:
        peak_mib, kind = torch.cuda.max_memory_allocated(backend.device) / 2**20, "CUDA max_memory_allocated"
    else:
        # Linux reports ru_maxrss in KiB.
        peak_mib, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    gflops = network_gflops(backend, stack)  # after the peak: counting holds extra tensors
    return BenchmarkReport(
        device=str(backend.device),
        precision=str(backend.dtype).replace("torch.", ""),
        frames=frames,
        height_px=height_px,
        width_px=width_px,
        repeats=repeats,
        cold_s=cold_s,
        warm_median_s=warm_median_s,
        peak_memory_mib=peak_mib,
        peak_memory_kind=kind,
        gflops=gflops,
    )


def _cpu_note(device: str) -> str:
    """The CPU, its vector capability and native bf16 support: CPU figures depend on them more than on the clock."""
    if not device.startswith("cpu"):
        return ""
    from ..core.depth.device import cpu_has_native_bf16

    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f" ({cpu_description()}; {torch.backends.cpu.get_cpu_capability()}, {bf16})"


def format_report(report: BenchmarkReport) -> str:
    order = [s for s in ("registration", "preprocess", *STAGES, "postprocess", "fusion_total") if s in report.cold_s]
    order += [s for s in report.cold_s if s not in order and s != END_TO_END] + [END_TO_END]
    lines = [
        f"HybridDepth benchmark: {report.frames} frames, {report.width_px}x{report.height_px} px, "
        f"device {report.device}{_cpu_note(report.device)}, {report.precision}, warm = median of {report.repeats}",
        f"{'stage':<20}{'cold ms':>10}{'warm ms':>10}{'GFLOP':>10}{'GFLOP/s':>10}",
    ]
    for stage in order:
        cold_ms, warm_ms = report.cold_s[stage] * 1e3, report.warm_median_s[stage] * 1e3
        line = f"{stage:<20}{cold_ms:>10.1f}{warm_ms:>10.1f}"
        if report.gflops.get(stage, 0.0) > 0:
            gflop = report.gflops[stage]
            line += f"{gflop:>10.2f}{gflop / report.warm_median_s[stage] if warm_ms > 0 else 0.0:>10.0f}"
        lines.append(line)
    total_gflop = sum(report.gflops.values())
    lines.append(f"network work: {total_gflop:.1f} GFLOP per stack")
    lines.append(f"peak memory: {report.peak_memory_mib:.0f} MiB ({report.peak_memory_kind})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="hybriddepth", help="hybriddepth | focus_measure (weight-free)")
    parser.add_argument("--stack", default=None, help="weight-free mode: a focal-stack folder to time instead of a synthetic stack")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=480, help="stack and working height, px")
    parser.add_argument("--width", type=int, default=640, help="stack and working width, px")
    parser.add_argument("--precision", default="fp32", help="fp32 | fp16 | bf16")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls; the median is reported")
    args = parser.parse_args(argv)
    if args.backend == "focus_measure":
        report = run_weight_free_benchmark(args.device, args.frames, args.height, args.width, args.repeats, args.stack)
        print(format_weight_free_report(report, args.stack or "synthetic, unregistered"))
        return 0
    if args.backend != "hybriddepth":
        parser.error(f"unknown backend '{args.backend}'")
    report = run_benchmark(args.device, args.frames, args.height, args.width, args.precision, args.repeats)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
