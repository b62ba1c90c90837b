"""dataset_recorder_node: records your camera's focal stacks with a depth camera's ground truth, for eval and training.

Subscribes to `focal_stack` (hybriddepth_ros/FocalStack, from focus_sweep_node)
and to `depth_topic` (sensor_msgs/Image, 32FC1 metres or 16UC1 millimetres)
from a depth camera whose depth is aligned to the focus camera's view (e.g. an
RGB-D camera's depth aligned to its colour stream, the colour camera being
the one that sweeps focus). Each stack is paired with the depth image whose
stamp is nearest within `slop_s` (core/capture/time_sync.py, the
message_filters rule) and written as one sample folder,
`<output_dir>/stack_<stamp ns>/`, in the layout hybriddepth-eval and
hybriddepth-train read (core/data/recordings.py), atomically: a folder is
complete or absent. A depth map of another resolution but the same aspect
ratio is rescaled (nearest neighbour); anything else is refused.

Parameters: output_dir, depth_topic, slop_s, sync_queue_size, max_samples
(0: no limit), min_interval_s (skip stacks closer in time than this to the
last recorded one); QoS through the standard qos_overrides (nodes/qos.py).
Publishes one status per stack on /diagnostics.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from hybriddepth_ros.msg import FocalStack as FocalStackMsg

from ..core.capture.time_sync import ApproximatePairer
from ..core.data.bags import DEFAULT_SLOP_S
from ..core.data.recordings import write_recording_sample
from ..core.data.sample import DatasetError
from ..core.stack.focal_stack import FocalStackError
from . import conversions
from .diagnostics import ERROR, OK, RECORDER_DIAGNOSTIC_NAME, DiagnosticReporter
from .parameters import ParameterSpec, declare_parameters, not_empty
from .qos import OVERRIDABLE, stream_qos
from .run import run_node

DIAGNOSTIC_NAME = RECORDER_DIAGNOSTIC_NAME
DEFAULT_DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
"""realsense2_camera's aligned depth, relative to the node's namespace; remap or set depth_topic for other cameras."""


RECORDER_PARAMETERS = (
    ParameterSpec("output_dir", "recordings", "Folder the sample folders are written into (created if absent).",
                  check=not_empty("output_dir")),
    ParameterSpec("depth_topic", DEFAULT_DEPTH_TOPIC, "Depth image topic (32FC1 m or 16UC1 mm), aligned to the "
                  "focus camera's view.", check=not_empty("depth_topic")),
    ParameterSpec("slop_s", DEFAULT_SLOP_S, "Largest stamp difference of a stack and its depth image, seconds.",
                  low=0.0, high=10.0, low_open=True),
    ParameterSpec("sync_queue_size", 60, "Messages per topic kept while waiting for a partner: enough depth images "
                  "to span one sweep.", low=1, high=10000),
    ParameterSpec("max_samples", 0, "Stop recording after this many samples (0: no limit).", low=0, high=10**9),
    ParameterSpec("min_interval_s", 0.0, "Skip stacks closer in time than this to the last recorded one, seconds.",
                  low=0.0, high=86400.0),
)


class DatasetRecorderNode(Node):
    """Pairs focal stacks with depth images by stamp and writes them as recording sample folders."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("dataset_recorder_node", **node_kwargs)
        values = declare_parameters(self, RECORDER_PARAMETERS)
        self.output_dir = Path(values["output_dir"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.depth_topic = values["depth_topic"]
        self.max_samples = int(values["max_samples"])
        self.min_interval_s = float(values["min_interval_s"])
        # Stacks come once per sweep, depth at the camera's rate: the queue must span a sweep of depth images.
        self._pairer = ApproximatePairer(int(values["sync_queue_size"]), float(values["slop_s"]))
        self._diagnostics = DiagnosticReporter(self, DIAGNOSTIC_NAME)
        self.samples_recorded = 0
        self._last_recorded_s: float | None = None
        self.create_subscription(FocalStackMsg, "focal_stack", self._on_stack, stream_qos(),
                                 qos_overriding_options=OVERRIDABLE)
        # Best effort matches both kinds of depth camera publisher; qos_overrides changes it.
        self.create_subscription(Image, self.depth_topic, self._on_depth, qos_profile_sensor_data,
                                 qos_overriding_options=OVERRIDABLE)
        self.get_logger().info(
            f"recording focal_stack + {self.depth_topic} into {self.output_dir.resolve()} "
            f"(slop {self._pairer.slop_ns / 1e9:g} s)"
        )

    def _on_stack(self, msg: FocalStackMsg) -> None:
        self._add(0, msg)

    def _on_depth(self, msg: Image) -> None:
        self._add(1, msg)

    def _add(self, input_index: int, msg) -> None:
        pair = self._pairer.add(input_index, conversions.stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._record(*pair)

    def _record(self, stack_msg: FocalStackMsg, depth_msg: Image) -> None:
        stamp_ns = conversions.stamp_to_ns(stack_msg.header.stamp)
        stamp = {"stamp": f"{stamp_ns * 1e-9:.9f}"}
        if self.max_samples and self.samples_recorded >= self.max_samples:
            return
        if self._last_recorded_s is not None and stamp_ns * 1e-9 - self._last_recorded_s < self.min_interval_s:
            return
        if (self.output_dir / f"stack_{stamp_ns}").exists():  # the same stack delivered again
            return
        try:
            stack = conversions.focal_stack_from_msg(stack_msg).validate()
            depth_m = conversions.depth_image_to_metres(depth_msg)
            folder = write_recording_sample(self.output_dir, f"stack_{stamp_ns}", stack, depth_m, {
                "depth_topic": self.depth_topic,
                "depth_stamp_s": conversions.stamp_to_seconds(depth_msg.header.stamp),
                "depth_frame_id": depth_msg.header.frame_id,
                "depth_encoding": depth_msg.encoding,
            })
        except (conversions.ConversionError, FocalStackError, DatasetError, OSError) as exc:
            text = f"stack at {stamp['stamp']} s not recorded: {exc}"
            self.get_logger().error(text)
            self._diagnostics.report(ERROR, text, stamp)
            return
        self.samples_recorded += 1
        self._last_recorded_s = stamp_ns * 1e-9
        self._diagnostics.report(OK, "sample recorded", {**stamp, "folder": str(folder),
                                                         "samples_recorded": str(self.samples_recorded)})
        self.get_logger().info(f"recorded {folder.name} ({self.samples_recorded} so far)")
        if self.max_samples and self.samples_recorded == self.max_samples:
            self.get_logger().info(f"max_samples {self.max_samples} reached: later stacks are not recorded")


def main(args=None) -> int:
    return run_node(DatasetRecorderNode, "dataset_recorder_node", (ValueError, OSError), args)


if __name__ == "__main__":
    sys.exit(main())
