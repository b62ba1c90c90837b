"""depth_fusion_node: FocalStack in; metric depth, confidence, camera info, reference image and cloud out.

Subscribes `focal_stack` (hybriddepth_ros/FocalStack) and publishes, in the
stack's camera optical frame with the stack's stamp (all outputs of one stack
carry the identical header):
  depth/image_rect   sensor_msgs/Image 32FC1, metres, NaN where unknown (REP 118)
  depth/confidence   sensor_msgs/Image 32FC1 in [0, 1]
  depth/camera_info  sensor_msgs/CameraInfo of the depth image
  rgb/image_rect     sensor_msgs/Image rgb8: the reference frame the depth is
                     registered to (while someone subscribes)
  rgb/camera_info    sensor_msgs/CameraInfo of rgb/image_rect (equal to depth/camera_info)
  depth/points       sensor_msgs/PointCloud2, organised, x y z rgb (if publish_cloud,
                     and only while someone subscribes)
  /diagnostics       diagnostic_msgs/DiagnosticArray, one status per stack
The rgb/ and depth/ pairs are what depth_image_proc (register,
point_cloud_xyzrgb) expects, so it can be chained after this node.
Bad stacks are logged and reported as an ERROR diagnostic; nothing is published
for them and the node carries on with the next stack.

While a stack is fused, a newer one replaces any stack still waiting (none
queue up). Each diagnostic counts the stacks dropped that way (or lost on the
way) since the previous fused one, from gaps in FocalStack.sweep_number: more
than none means fusion is slower than the camera, and the status is WARN.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from hybriddepth_ros.msg import FocalStack as FocalStackMsg

from ..core.depth.device import PRECISIONS
from ..core.depth.fusion import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MAX_DEPTH_M,
    DEFAULT_MIN_DEPTH_M,
    DepthFusion,
    FusedDepth,
)
from ..core.depth.densify import (
    DEFAULT_DECAY_PX,
    DEFAULT_GUIDE_SIGMA,
    DEFAULT_SEED_MIN_CONFIDENCE,
    DEFAULT_SMOOTHNESS,
)
from ..core.depth.focus_measure import (
    DEFAULT_BLUR_PSF_RADIUS_PX,
    DEFAULT_BLUR_RATE_STACKS,
    DEFAULT_BLUR_SIGMA_PX_PER_DIOPTER,
    DEFAULT_COARSE_BAND_WEIGHT,
    DEFAULT_CURVE_EXPONENT,
    DEFAULT_CURVE_FLOOR,
    DEFAULT_DEFOCUS_BLEND,
    DEFAULT_DENSIFY,
    DEFAULT_END_DEFOCUS,
    DEFAULT_END_PEAK_WEIGHT,
    DEFAULT_FRONT_EDGE,
    DEFAULT_OCCLUDER_PEAK,
    DEFAULT_WINDOW_PX,
    MAX_BLUR_PSF_RADIUS_PX,
)
from ..core.depth.hybriddepth import DEFAULT_WORKING_SIZE_PX, METRIC_BRANCHES, RELATIVE_INPUTS
from ..core.depth.pointcloud import back_project
from ..core.depth.registry import DEPTH_BACKENDS, choose_depth_backend
from ..core.models.alignment import ALIGNMENT_METHODS
from ..core.models.depth_anything import ENCODERS, VERSIONS
from ..core.stack.focal_stack import MAX_FOCUS_DISTANCE_M, MAX_IMAGE_SIDE_PX, FocalStackError
from . import conversions
from .publishing import publish_or_log
from .qos import OVERRIDABLE, stream_qos
from .run import run_node
from .diagnostics import FUSION_DIAGNOSTIC_NAME, ERROR, OK, WARN, DiagnosticReporter, DroppedStackCounter
from .parameters import ParameterSpec, ParameterUpdates, declare_parameters, device_problem

DIAGNOSTIC_NAME = FUSION_DIAGNOSTIC_NAME


def _odd(name: str):
    return lambda value: None if value % 2 == 1 else f"{name} must be odd, got {value}"


FUSION_PARAMETERS = (
    ParameterSpec("backend", "focus_measure",
                  "Depth backend: focus_measure needs no weights; hybriddepth needs checkpoint_path or "
                  "relative_weights_path, and without usable weights runs focus_measure (said in the log).",
                  choices=DEPTH_BACKENDS),
    ParameterSpec("device", "auto", "Torch device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
                  check=device_problem),
    ParameterSpec("checkpoint_path", "", "Official HybridDepth Lightning .ckpt (e.g. NYUBest5-DFV-Trained.ckpt), "
                  "loaded strictly."),
    ParameterSpec("relative_weights_path", "", "Stand-alone Depth Anything V1/V2 weight file for the relative branch; "
                  "replaces the checkpoint's, or runs without one (then without refinement)."),
    ParameterSpec("relative_encoder", "vits", "Encoder size of relative_weights_path.", choices=ENCODERS),
    ParameterSpec("relative_version", 1, "Depth Anything version of relative_weights_path.", choices=VERSIONS),
    ParameterSpec("dfv_weights_path", "", "Stand-alone DFV weight file for the DFF branch."),
    ParameterSpec("precision", "fp32", "Network precision (autocast); fp16 runs as fp32 on a CPU.",
                  choices=tuple(PRECISIONS)),
    ParameterSpec("relative_input", "reference", "Relative branch input: the reference frame or an all-in-focus "
                  "composite of the stack.", choices=RELATIVE_INPUTS),
    ParameterSpec("alignment", "least_squares", "Global scale-and-shift fit: the reference's least squares, or "
                  "robust and weighted by DFF confidence.", choices=ALIGNMENT_METHODS),
    ParameterSpec("metric_branch", "dfv", "DFF branch of the network: the checkpoint's DFV, or the weight-free "
                  "focus measure.", choices=METRIC_BRANCHES),
    ParameterSpec("working_height", DEFAULT_WORKING_SIZE_PX[0], "Height the network runs at, pixels (depth is "
                  "resized back to the frames).", low=32, high=MAX_IMAGE_SIDE_PX),
    ParameterSpec("working_width", DEFAULT_WORKING_SIZE_PX[1], "Width the network runs at, pixels.",
                  low=32, high=MAX_IMAGE_SIDE_PX),
    ParameterSpec("focus_measure.window_px", DEFAULT_WINDOW_PX, "Weight-free DFF: side of the window the focus "
                  "measure is averaged over (odd); larger is steadier on weak texture, blurrier at edges.",
                  low=1, high=31, check=_odd("focus_measure.window_px")),
    ParameterSpec("focus_measure.curve_exponent", DEFAULT_CURVE_EXPONENT, "Weight-free DFF: Box-Cox exponent of the "
                  "focus-curve peak fit (-3 for a real aperture's disc blur, -2 for NYU-protocol stacks).",
                  low=-5.0, high=1.0),
    ParameterSpec("focus_measure.densify", DEFAULT_DENSIFY, "Weight-free DFF: propagate measured depth edge-aware "
                  "into pixels without a focus cue (dense output, lower confidence there); false: measured only."),
    ParameterSpec("focus_measure.seed_min_confidence", DEFAULT_SEED_MIN_CONFIDENCE, "Weight-free DFF: measurements "
                  "at least this confident anchor the propagation.", low=0.0, high=1.0),
    ParameterSpec("focus_measure.decay_px", DEFAULT_DECAY_PX, "Weight-free DFF: distance (edge-aware, pixels) over "
                  "which confidence of propagated depth falls away from measurements.",
                  low=0.0, low_open=True, high=1000.0),
    ParameterSpec("focus_measure.smoothness", DEFAULT_SMOOTHNESS, "Weight-free DFF: strength of the propagation's "
                  "smoothness term against the measurements.", low=0.0, low_open=True, high=100.0),
    ParameterSpec("focus_measure.guide_sigma", DEFAULT_GUIDE_SIGMA, "Weight-free DFF: colour difference (0-1) at "
                  "which the all-in-focus guide stops propagation.", low=0.0, low_open=True, high=1.0),
    ParameterSpec("focus_measure.end_peak_weight", DEFAULT_END_PEAK_WEIGHT, "Weight-free DFF: weight of pixels "
                  "sharpest at either end of the sweep (depth only bounded there) as anchors.", low=0.0, high=1.0),
    ParameterSpec("focus_measure.end_defocus", DEFAULT_END_DEFOCUS, "Weight-free DFF: read pixels sharpest at "
                  "either end of the sweep by depth from defocus between the end frame and its neighbour, "
                  "calibrated on the measured pixels; false: the end frame's bound."),
    ParameterSpec("focus_measure.defocus_blend", DEFAULT_DEFOCUS_BLEND, "Weight-free DFF: average each measured "
                  "pixel's focus peak with its depth from relative blur between its sharpest frame and the next "
                  "on its side, weighted by their expected errors; false: the focus peak alone."),
    ParameterSpec("focus_measure.occluder_peak", DEFAULT_OCCLUDER_PEAK, "Weight-free DFF: a flat pixel whose focus "
                  "curve has two peaks (next to an occlusion edge) takes the nearer, the occluding edge's, and "
                  "anchors the propagation; false: the higher peak, and flat pixels do not anchor."),
    ParameterSpec("focus_measure.front_edge", DEFAULT_FRONT_EDGE, "Weight-free DFF: a flat pixel whose focus "
                  "peak (an edge in its window; without one, the near peak of the occlusion rims around it) is nearer "
                  "than every textured measurement around it reads its own surface's outline (a flat object in "
                  "front) and anchors the propagation; false: it does not."),
    ParameterSpec("focus_measure.blur_rate_stacks", DEFAULT_BLUR_RATE_STACKS, "Weight-free DFF: the relative-blur "
                  "rate (end_defocus, defocus_blend) is averaged over up to this many recent stacks of the same camera "
                  "and focus distances, since it belongs to the lens; 1: each stack's own calibration.",
                  low=1, high=1000),
    ParameterSpec("focus_measure.coarse_band_weight", DEFAULT_COARSE_BAND_WEIGHT, "Weight-free DFF: weight of a "
                  "coarser focus band (1.0 suits the NYU protocol's Gaussian blur).", low=0.0, high=10.0),
    ParameterSpec("focus_measure.curve_floor", DEFAULT_CURVE_FLOOR, "Weight-free DFF: share of each focus curve's "
                  "lowest value taken off before the peak fit, where blur stops growing with defocus (0.5 suits "
                  "the NYU protocol's 7x7 gather; 0 for a real lens).", low=0.0, high=0.99),
    ParameterSpec("focus_measure.blur_sigma_px_per_diopter", DEFAULT_BLUR_SIGMA_PX_PER_DIOPTER, "Weight-free DFF: "
                  "a Gaussian blur's standard deviation per diopter of defocus, pixels, where known (6.51 for the "
                  "NYU protocol): every measurement is read by blur equalisation with it, as is any pixel without one "
                  "where that read is sure, and end-of-sweep pixels "
                  "whose last frames look alike from the first blurred frame; not for a real lens's disc blur, "
                  "which the Gaussian does not model; 0: not known.", low=0.0, high=1000.0),
    ParameterSpec("focus_measure.blur_psf_radius_px", DEFAULT_BLUR_PSF_RADIUS_PX, "Weight-free DFF: radius (pixels) "
                  "at which that known blur is cut off (3 for the NYU protocol's 7x7 gather); 0: at 3 standard "
                  "deviations.", low=0, high=MAX_BLUR_PSF_RADIUS_PX),
    ParameterSpec("min_depth_m", DEFAULT_MIN_DEPTH_M, "Depth below this is published as NaN, metres.",
                  low=0.0, low_open=True, high=MAX_FOCUS_DISTANCE_M, dynamic=True),
    ParameterSpec("max_depth_m", DEFAULT_MAX_DEPTH_M, "Depth above this is published as NaN, metres.",
                  low=0.0, low_open=True, high=MAX_FOCUS_DISTANCE_M, dynamic=True),
    ParameterSpec("confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD, "Depth whose confidence is below this is "
                  "published as NaN.", low=0.0, high=1.0, dynamic=True),
    ParameterSpec("publish_cloud", True, "Publish depth/points (built only while it has subscribers).", dynamic=True),
    ParameterSpec("cloud_decimation", 1, "Keep every n-th row and column in depth/points.", low=1, high=64,
                  dynamic=True),
)


class DepthFusionNode(Node):
    """Thin ROS wrapper around core.depth.fusion.DepthFusion."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("depth_fusion_node", **node_kwargs)
        values = declare_parameters(self, FUSION_PARAMETERS)
        self._backend_name, backend = self._create_backend(values)
        self._fusion = self._fusion_with(backend, values)
        self._publish_cloud = bool(values["publish_cloud"])
        self._cloud_decimation = int(values["cloud_decimation"])
        ParameterUpdates(self, FUSION_PARAMETERS, values, self._apply_parameters, self._fusion_settings_problem)

        publisher = lambda msg_type, topic: self.create_publisher(  # noqa: E731
            msg_type, topic, stream_qos(), qos_overriding_options=OVERRIDABLE)
        self._depth_pub = publisher(Image, "depth/image_rect")
        self._confidence_pub = publisher(Image, "depth/confidence")
        self._info_pub = publisher(CameraInfo, "depth/camera_info")
        self._rgb_pub = publisher(Image, "rgb/image_rect")
        self._rgb_info_pub = publisher(CameraInfo, "rgb/camera_info")
        self._cloud_pub = publisher(PointCloud2, "depth/points")
        self._diagnostics = DiagnosticReporter(self, DIAGNOSTIC_NAME)
        self._dropped_stacks = DroppedStackCounter()
        # Depth 1: while a stack is fused, only the newest waiting one is worth fusing next.
        # One-argument callback: the form every distribution's executor calls (Humble's passes no MessageInfo).
        self.create_subscription(FocalStackMsg, "focal_stack", self._on_stack, stream_qos(depth=1),
                                 qos_overriding_options=OVERRIDABLE)
        self.get_logger().info(
            f"depth fusion ready: backend={self._backend_name} on {getattr(backend, 'device', 'cpu')}"
        )

    @staticmethod
    def _fusion_with(backend, values) -> DepthFusion:
        return DepthFusion(
            backend=backend,
            min_depth_m=values["min_depth_m"],
            max_depth_m=values["max_depth_m"],
            confidence_threshold=values["confidence_threshold"],
        )

    def _fusion_settings_problem(self, values) -> str | None:
        """Why the combined depth range and threshold cannot be used (e.g. min >= max), or None."""
        try:
            self._fusion_with(self._fusion.backend, values)
        except ValueError as exc:
            return str(exc)
        return None

    def _apply_parameters(self, changes: dict) -> None:
        """Run-time changes, already validated: masks, cloud on/off and decimation apply from the next stack."""
        masks = {k: v for k, v in changes.items() if k in ("min_depth_m", "max_depth_m", "confidence_threshold")}
        if masks:
            self._fusion = dataclasses.replace(self._fusion, **masks)
        if "publish_cloud" in changes:
            self._publish_cloud = bool(changes["publish_cloud"])
        if "cloud_decimation" in changes:
            self._cloud_decimation = int(changes["cloud_decimation"])
        self.get_logger().info(f"parameters changed: {changes}")

    def _create_backend(self, values: dict):
        """The configured backend, or the weight-free one by the registry's fallback policy (said once)."""
        hybriddepth_options = {
            "checkpoint_path": values["checkpoint_path"] or None,
            "relative_weights_path": values["relative_weights_path"] or None,
            "relative_encoder": values["relative_encoder"],
            "relative_version": int(values["relative_version"]),
            "dfv_weights_path": values["dfv_weights_path"] or None,
            "precision": values["precision"],
            "relative_input": values["relative_input"],
            "alignment": values["alignment"],
            "metric_branch": values["metric_branch"],
            "working_size": (int(values["working_height"]), int(values["working_width"])),
        }
        prefix = "focus_measure."
        focus_measure_options = {name[len(prefix):]: value for name, value in values.items() if name.startswith(prefix)}
        choice = choose_depth_backend(
            values["backend"], values["device"],
            {"hybriddepth": hybriddepth_options, "focus_measure": focus_measure_options},
        )
        if choice.fallback_reason:
            log = self.get_logger().error if choice.fallback_is_error else self.get_logger().warning
            log(f"backend '{choice.requested}': {choice.fallback_reason}")
        return choice.name, choice.backend

    def _on_stack(self, msg: FocalStackMsg) -> None:
        received = time.perf_counter()
        dropped = self._dropped_stacks.update(msg.header.frame_id, int(msg.sweep_number))
        if dropped is None:
            self.get_logger().warning(
                "stacks on focal_stack carry no sweep_number (0): dropped stacks cannot be counted", once=True
            )
        try:
            stack = conversions.focal_stack_from_msg(msg)
            if not stack.frame_id:
                raise conversions.ConversionError("focal stack header.frame_id is empty")
            fused = self._fusion.process(stack)
        except (conversions.ConversionError, FocalStackError) as exc:
            self._report_error(msg, f"rejected focal stack: {exc}")
            return
        except Exception as exc:  # a bug or a backend failure must not kill the node
            self.get_logger().error(traceback.format_exc())
            self._report_error(msg, f"depth fusion failed: {type(exc).__name__}: {exc}")
            return
        failures = self._publish(msg, fused)
        if failures:
            self._report_error(msg, "; ".join(failures))
            return
        latency_s = time.perf_counter() - received
        self._report_published(msg, fused, latency_s, dropped)

    def _publish(self, msg: FocalStackMsg, fused: FusedDepth) -> list[str]:
        """Every output of one stack, with the stack's header; why any could not be published."""
        header = msg.header
        intrinsics = fused.stack.intrinsics
        info = conversions.intrinsics_to_camera_info(intrinsics, header)
        outputs = [
            (self._depth_pub, lambda: conversions.float_image(fused.depth_m, header)),
            (self._confidence_pub, lambda: conversions.float_image(fused.confidence, header)),
            (self._info_pub, lambda: info),
            (self._rgb_pub, lambda: conversions.rgb8_to_image(fused.reference_rgb, header)),
            (self._rgb_info_pub, lambda: info),
        ]
        if self._publish_cloud:
            outputs.append((self._cloud_pub, lambda: self._cloud(fused, header)))
        failures = []
        for publisher, build in outputs:
            # The reference image and the cloud cost memory and time: built only for subscribers.
            if publisher in (self._rgb_pub, self._cloud_pub) and publisher.get_subscription_count() == 0:
                continue
            failure = publish_or_log(self, publisher, build())
            if failure:
                failures.append(failure)
        return failures

    def _cloud(self, fused: FusedDepth, header) -> PointCloud2:
        step = self._cloud_decimation
        points = back_project(fused.depth_m, fused.stack.intrinsics, step)
        colours = fused.reference_rgb[::step, ::step]
        return conversions.organised_cloud(points, colours, header)

    def _report_published(self, msg: FocalStackMsg, fused: FusedDepth, latency_s: float, dropped: int | None) -> None:
        values = {
            "backend": self._backend_name,
            "latency_s": f"{latency_s:.4f}",
            "stacks_dropped": "unknown" if dropped is None else str(dropped),
            "stacks_dropped_total": "unknown" if dropped is None else str(self._dropped_stacks.total),
            "coverage": f"{fused.coverage:.4f}",
            "stamp": f"{conversions.stamp_to_seconds(msg.header.stamp):.9f}",
        }
        values.update({f"{stage}_s": f"{seconds:.4f}" for stage, seconds in fused.timings_s.items()})
        note = fused.diagnostics.get("note")
        values.update({key: f"{value:.4f}" if isinstance(value, float) else str(value)
                       for key, value in fused.diagnostics.items() if key not in ("note", "coverage")})
        if note:
            self.get_logger().warning(f"depth published with a warning: {note}", throttle_duration_sec=30.0)
            self._diagnostics.report(WARN, f"depth published; {note}", values)
        elif dropped:
            text = f"depth published; {dropped} newer stack(s) arrived while fusing and were dropped"
            self.get_logger().warning(
                f"{text}: fusion ({latency_s:.3f} s per stack) is slower than the camera", throttle_duration_sec=30.0
            )
            self._diagnostics.report(WARN, text, values)
        else:
            self._diagnostics.report(OK, "depth published", values)

    def _report_error(self, msg: FocalStackMsg, text: str) -> None:
        self.get_logger().error(text)
        stamp = f"{conversions.stamp_to_seconds(msg.header.stamp):.9f}"
        self._diagnostics.report(ERROR, text, {"stamp": stamp})


def main(args=None) -> int:
    return run_node(DepthFusionNode, "depth_fusion_node", (ValueError, RuntimeError), args)


if __name__ == "__main__":
    sys.exit(main())
