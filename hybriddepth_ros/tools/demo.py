"""The end-to-end demo: real nodes over DDS on the simulated camera, scored against ground truth.

Starts focus_sweep_node (simulated camera) and depth_fusion_node as processes
with config/pipeline.yaml, listens to their outputs over DDS, and for each stack
prints fusion latency and accuracy (AbsRel, RMSE, delta<1.25) against the
simulator's ground-truth depth, on all pixels and on confident pixels with their
coverage. Writes a colour-mapped depth PNG and a PLY point cloud of the last stack.
    python -m hybriddepth_ros.tools.demo --stacks 3 --output-dir demo_output
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from hybriddepth_ros.nodes.qos import stream_qos
from sensor_msgs.msg import Image, PointCloud2

from ..core.eval.metrics import depth_metrics
from ..core.depth.pointcloud import write_ply
from ..core.eval.visualize import colorize_depth
from ..nodes import conversions
from ..nodes.diagnostics import FUSION_DIAGNOSTIC_NAME
from ..pipeline_plan import default_params_file, pipeline_plan
from .run_pipeline import start_nodes, stop_nodes


DEMO_SIZE_PX = (320, 240)


class OutputCollector(Node):
    """Gathers, per stack stamp, the depth, confidence, cloud, ground truth and fusion diagnostics."""

    def __init__(self) -> None:
        super().__init__("hybriddepth_demo_collector")
        self.by_stamp: dict[float, dict] = {}
        topics = {
            "depth": "depth/image_rect",
            "confidence": "depth/confidence",
            "ground_truth": "simulated/ground_truth_depth",
        }
        for key, topic in topics.items():
            self.create_subscription(Image, topic, self._keeper(key), stream_qos())
        self.create_subscription(PointCloud2, "depth/points", self._keeper("cloud"), stream_qos())
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _keeper(self, key: str):
        def keep(msg) -> None:
            stamp = conversions.stamp_to_seconds(msg.header.stamp)
            self.by_stamp.setdefault(round(stamp, 6), {})[key] = msg

        return keep

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != FUSION_DIAGNOSTIC_NAME:
                continue
            values = {kv.key: kv.value for kv in status.values}
            if "stamp" in values:
                entry = self.by_stamp.setdefault(round(float(values["stamp"]), 6), {})
                entry["diagnostic"] = (status.level, status.message, values)

    def complete(self) -> list[tuple[float, dict]]:
        needed = {"depth", "confidence", "ground_truth", "cloud", "diagnostic"}
        return sorted((s, e) for s, e in self.by_stamp.items() if needed <= e.keys())


def score_stack(entry: dict, confidence_threshold: float) -> dict[str, dict]:
    """Metrics on all pixels with a depth, and on those at or above the confidence threshold."""
    depth = conversions.float_image_to_array(entry["depth"])
    confidence = conversions.float_image_to_array(entry["confidence"])
    truth = conversions.float_image_to_array(entry["ground_truth"])
    confident = confidence >= confidence_threshold
    scores = {"all": depth_metrics(depth, truth), "confident": depth_metrics(depth, truth, mask=confident)}
    scores["confident"]["coverage"] = float((confident & np.isfinite(depth)).mean())
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, default=3, help="stacks to score")
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--params-file", default=default_params_file())
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("--real-stack", default=str(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pixel6pro_stack"),
                        help="a real focal-stack folder to show weight-free depth of too (skipped when absent)")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    plan = pipeline_plan(args.params_file, camera_backend="simulated", depth_backend="focus_measure")
    # A small simulated camera keeps the demo quick on a CPU.
    plan[0].overrides.update({"width": DEMO_SIZE_PX[0], "height": DEMO_SIZE_PX[1]})
    # Publish every pixel's depth so accuracy can be stated on all pixels; the
    # confident subset is scored with the threshold the pipeline would apply.
    plan[1].overrides["confidence_threshold"] = 0.0
    rclpy.init()
    collector = OutputCollector()
    # The fusion node first, and the camera once it listens: the demo always scores stacks 0, 1, 2,
    # whose sensor noise is seeded by their index, so its figures repeat from run to run.
    sweep_plan, fusion_plan = plan
    processes = start_nodes([fusion_plan])
    deadline = time.monotonic() + args.timeout_s
    try:
        while collector.count_subscribers("focal_stack") == 0:
            if time.monotonic() > deadline or processes[0].poll() is not None:
                print("demo: the fusion node did not come up; see its log above")
                return 1
            rclpy.spin_once(collector, timeout_sec=0.2)
        processes += start_nodes([sweep_plan])
        while len(collector.complete()) < args.stacks:
            if time.monotonic() > deadline:
                print(f"demo: timed out after {args.timeout_s:.0f} s with {len(collector.complete())} stacks")
                return 1
            if any(process.poll() is not None for process in processes):
                print("demo: a node exited early; see its log above")
                return 1
            rclpy.spin_once(collector, timeout_sec=0.2)
    finally:
        stop_nodes(processes)

    results = collector.complete()[: args.stacks]
    print()
    print(f"{'stack':>5} {'latency_s':>9} | {'AbsRel':>7} {'RMSE_m':>7} {'d<1.25':>7} (all) | "
          f"{'AbsRel':>7} {'RMSE_m':>7} {'d<1.25':>7} {'coverage':>8} (confident >= {args.confidence_threshold})")
    for index, (_, entry) in enumerate(results):
        level, message, values = entry["diagnostic"]
        scores = score_stack(entry, args.confidence_threshold)
        a, c = scores["all"], scores["confident"]
        print(f"{index:>5} {float(values['latency_s']):>9.3f} | {a['abs_rel']:>7.4f} {a['rmse_m']:>7.4f} "
              f"{a['delta1']:>7.4f}       | {c['abs_rel']:>7.4f} {c['rmse_m']:>7.4f} {c['delta1']:>7.4f} "
              f"{c['coverage']:>8.3f}")

    _, last = results[-1]
    depth = conversions.float_image_to_array(last["depth"])
    confidence = conversions.float_image_to_array(last["confidence"])
    confident_depth = np.where(confidence >= args.confidence_threshold, depth, np.nan)
    truth = conversions.float_image_to_array(last["ground_truth"])
    panel = np.hstack([colorize_depth(d, 0.3, 5.0) for d in (truth, depth, confident_depth)])
    cv2.imwrite(str(output_dir / "depth.png"), panel)
    cloud = conversions.cloud_to_array(last["cloud"])
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
    rgb_packed = cloud["rgb"].view(np.uint32)
    rgb = np.stack([(rgb_packed >> 16) & 255, (rgb_packed >> 8) & 255, rgb_packed & 255], axis=-1)
    count = write_ply(output_dir / "cloud.ply", points, rgb.astype(np.uint8))
    print(f"\nwrote {output_dir / 'depth.png'} (ground truth | all pixels | confident) and "
          f"{output_dir / 'cloud.ply'} ({count} points)")
    collector.destroy_node()
    rclpy.try_shutdown()
    if Path(args.real_stack).is_dir():
        from .real_stack_figure import main as real_stack_figure

        print(f"\nweight-free depth of the real stack {args.real_stack}:")
        real_stack_figure([args.real_stack, "--out", str(output_dir / "real_stack.png")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
