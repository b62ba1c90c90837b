"""ROS 2 bags (rosbag2, sqlite3 or MCAP) holding `FocalStack` messages and a depth topic, read without ROS.

The `rosbags` library (pure Python) opens both storage formats through
`rosbags.highlevel.AnyReader` and deserialises CDR with a type store; the
custom message is registered from this package's msg/FocalStack.msg with
`get_types_from_msg(text, "hybriddepth_ros/msg/FocalStack")` and
`Typestore.register` (rosbags documentation, "Register custom message
types"). Stacks are decoded by core/stack/message_decoding.py, the rules the
fusion node applies to the live topic.

Pairing: each stack is paired with the depth image whose header stamp is
nearest within `slop_s`, by the message_filters rule of
core/capture/time_sync.py, fed in bag order. A first pass indexes the pairs;
samples are then read on demand, so a long bag is never held in memory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..capture.time_sync import ApproximatePairer
from ..stack.focal_stack import FocalStackError
from ..stack.message_decoding import ConversionError, depth_image_to_metres, focal_stack_from_msg, stamp_to_ns
from .recordings import depth_to_stack_size
from .sample import DatasetError, DepthDataset, DepthSample, finite_positive, require_samples

FOCAL_STACK_TYPE = "hybriddepth_ros/msg/FocalStack"
IMAGE_TYPE = "sensor_msgs/msg/Image"
DEFAULT_STACK_TOPIC = "focal_stack"
DEFAULT_SLOP_S = 0.05
"""Stamps of a stack and its depth image may differ by less than this (a depth camera at 15 Hz or faster)."""
PAIRING_QUEUE_SIZE = 30


def focal_stack_msg_path() -> Path:
    """msg/FocalStack.msg: in the source tree, or installed under <prefix>/share/hybriddepth_ros/msg."""
    candidates = [Path(__file__).resolve().parents[3] / "msg" / "FocalStack.msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / "hybriddepth_ros" / "msg" / "FocalStack.msg" for prefix in prefixes]
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(
        "msg/FocalStack.msg not found (looked in the source tree and <prefix>/share/hybriddepth_ros/msg): "
        "install the package or pass its path"
    )


def focal_stack_typestore(msg_path: str | Path | None = None):
    """A rosbags type store of the ROS 2 standard messages plus hybriddepth_ros/msg/FocalStack."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    path = Path(msg_path) if msg_path else focal_stack_msg_path()
    typestore = get_typestore(Stores.LATEST)
    typestore.register(get_types_from_msg(path.read_text(), FOCAL_STACK_TYPE))
    return typestore


@dataclass(frozen=True)
class _Entry:
    """Where one message sits in the bag: its bag timestamp and header stamp (ns)."""

    bag_time_ns: int
    stamp_ns: int


class RosbagRecording(DepthDataset):
    """Stacks on `stack_topic` paired with depth on `depth_topic` (the bag's only Image topic when not given).

    Depth may be 32FC1 metres or 16UC1 millimetres, in the focal-stack camera's
    view (a different resolution of the same aspect ratio is rescaled). Pixels
    above `max_depth_m` are not scored.
    """

    kind = "rosbag"

    def __init__(
        self,
        path: str | Path,
        stack_topic: str = DEFAULT_STACK_TOPIC,
        depth_topic: str | None = None,
        slop_s: float = DEFAULT_SLOP_S,
        msg_path: str | Path | None = None,
        max_depth_m: float | None = None,
    ) -> None:
        from rosbags.highlevel import AnyReader

        self.path = Path(path)
        self.max_depth_m = max_depth_m
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such bag (a rosbag2 folder, or its .mcap / .db3 file)")
        self.typestore = focal_stack_typestore(msg_path)
        try:
            self._reader = AnyReader([self.path], default_typestore=self.typestore)
            self._reader.open()
        except Exception as exc:  # rosbags raises its own AnyReaderError / ReaderError hierarchy
            raise DatasetError(f"{self.path}: not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from None
        topics = {c.topic: c.msgtype for c in self._reader.connections}
        if topics.get(stack_topic) != FOCAL_STACK_TYPE:
            raise DatasetError(f"{self.path}: no {FOCAL_STACK_TYPE} topic '{stack_topic}' (topics: {topics})")
        if depth_topic is None:
            images = sorted(t for t, msgtype in topics.items() if msgtype == IMAGE_TYPE)
            if len(images) != 1:
                raise DatasetError(
                    f"{self.path}: pass the depth topic: {len(images)} {IMAGE_TYPE} topics ({images})"
                )
            depth_topic = images[0]
        if topics.get(depth_topic) != IMAGE_TYPE:
            raise DatasetError(f"{self.path}: no {IMAGE_TYPE} topic '{depth_topic}' (topics: {topics})")
        self.stack_topic, self.depth_topic = stack_topic, depth_topic
        self._connections = {
            topic: [c for c in self._reader.connections if c.topic == topic] for topic in (stack_topic, depth_topic)
        }
        self.pairs = self._index_pairs(slop_s)
        require_samples(len(self.pairs), str(self.path),
                        f"no '{stack_topic}' stack has a '{depth_topic}' image within {slop_s} s")

    def _index_pairs(self, slop_s: float) -> list[tuple[_Entry, _Entry]]:
        pairer = ApproximatePairer(PAIRING_QUEUE_SIZE, slop_s)
        pairs = []
        connections = self._connections[self.stack_topic] + self._connections[self.depth_topic]
        for connection, bag_time_ns, raw in self._reader.messages(connections=connections):
            msg = self._deserialize(raw, connection, bag_time_ns)
            input_index = 0 if connection.topic == self.stack_topic else 1
            pair = pairer.add(input_index, stamp_to_ns(msg.header.stamp), _Entry(bag_time_ns, stamp_to_ns(msg.header.stamp)))
            if pair is not None:
                pairs.append(pair)
        return sorted(pairs, key=lambda pair: pair[0].stamp_ns)

    def _deserialize(self, raw, connection, bag_time_ns: int):
        try:
            return self._reader.deserialize(raw, connection.msgtype)
        except Exception as exc:  # a truncated or foreign message
            raise DatasetError(
                f"{self.path}: message on '{connection.topic}' at {bag_time_ns} ns does not deserialise as "
                f"{connection.msgtype}: {exc}"
            ) from None

    def _message(self, topic: str, entry: _Entry):
        stop = entry.bag_time_ns + 1
        for connection, bag_time_ns, raw in self._reader.messages(
            connections=self._connections[topic], start=entry.bag_time_ns, stop=stop
        ):
            msg = self._deserialize(raw, connection, bag_time_ns)
            if stamp_to_ns(msg.header.stamp) == entry.stamp_ns:
                return msg
        raise DatasetError(f"{self.path}: the '{topic}' message at {entry.bag_time_ns} ns is gone (bag changed?)")

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, index: int) -> DepthSample:
        stack_entry, depth_entry = self.pairs[index]
        source = f"{self.path} @ {stack_entry.stamp_ns} ns"
        try:
            stack = focal_stack_from_msg(self._message(self.stack_topic, stack_entry))
            depth_m = depth_image_to_metres(self._message(self.depth_topic, depth_entry))
        except (ConversionError, FocalStackError) as exc:
            raise DatasetError(f"{source}: {exc}") from None
        depth_m = depth_to_stack_size(depth_m, stack.height, stack.width, source)
        valid = finite_positive(depth_m, self.max_depth_m)
        return DepthSample(name=str(stack_entry.stamp_ns), depth_m=depth_m, valid_mask=valid, stack=stack)

    def describe(self) -> str:
        return (f"rosbag {self.path.name}: {len(self)} stacks on '{self.stack_topic}' paired with "
                f"'{self.depth_topic}'")
