"""Phone stack assembly and message checks without a socket: the pure logic behind the WebSocket server."""

import base64

import numpy as np
import pytest

from hybriddepth_ros.core.capture.phone.assembler import StackAssembler
from hybriddepth_ros.core.capture.phone.protocol import FrameMessage, FrameRejected, check_frame_fields
from hybriddepth_ros.core.stack.camera import CameraIntrinsics

INTRINSICS_PX = (500.0, 500.0, 31.5, 23.5)


def frame(stack_id="s", index=0, count=3, focus_m=1.0, intrinsics_px=INTRINSICS_PX, size=(48, 64)):
    return FrameMessage(stack_id, index, count, focus_m, b"", intrinsics_px), np.full((*size, 3), index, np.uint8)


def test_frames_in_any_order_become_a_stack_sorted_near_to_far():
    assembler = StackAssembler()
    replies = [assembler.add_frame(*frame(index=i, focus_m=d)) for i, d in ((2, 0.5), (0, 2.0), (1, 1.0))]
    assert [r["type"] for r in replies] == ["ack", "ack", "stack_complete"]
    assert replies[1]["received"] == 2
    stack = assembler.pop_stack()
    np.testing.assert_allclose(stack.focus_distances_m, [0.5, 1.0, 2.0])
    assert [int(f[0, 0, 0]) for f in stack.frames] == [2, 1, 0], "frames follow their focus distances"
    assert stack.reference_index == 0 and stack.registered is False
    assert stack.intrinsics == CameraIntrinsics(*INTRINSICS_PX, 64, 48)
    assert assembler.pop_stack() is None


def test_configured_intrinsics_are_scaled_for_frames_without_them():
    assembler = StackAssembler(intrinsics=CameraIntrinsics(1000.0, 1000.0, 63.5, 47.5, 128, 96))
    for i in range(2):
        assembler.add_frame(*frame(index=i, count=2, focus_m=1.0 + i, intrinsics_px=None))
    assert assembler.pop_stack().intrinsics.fx == pytest.approx(500.0)


@pytest.mark.parametrize(
    "second, code",
    [
        (frame(index=1, count=4), "count_mismatch"),
        (frame(index=0), "duplicate_frame"),
        (frame(index=1, size=(24, 32)), "frame_size_mismatch"),
    ],
)
def test_frames_contradicting_their_stack_are_rejected(second, code):
    assembler = StackAssembler()
    assembler.add_frame(*frame(index=0))
    with pytest.raises(FrameRejected) as rejected:
        assembler.add_frame(*second)
    assert rejected.value.code == code and rejected.value.reply()["stack_id"] == "s"


def test_a_complete_but_unusable_stack_is_refused_as_bad_stack():
    assembler = StackAssembler()
    assembler.add_frame(*frame(index=0, count=2, focus_m=1.0))
    with pytest.raises(FrameRejected, match="duplicated focus distances") as rejected:
        assembler.add_frame(*frame(index=1, count=2, focus_m=1.0))
    assert rejected.value.code == "bad_stack"
    assert assembler.pop_stack() is None


def test_field_checks_name_the_field():
    jpeg = base64.b64encode(b"\xff\xd8 not decoded here").decode()
    good = {"stack_id": 7, "index": 1, "count": 2, "focus_diopters": 2.0, "jpeg_base64": jpeg}
    message = check_frame_fields(good, max_frames_per_stack=8)
    assert (message.stack_id, message.focus_distance_m, message.intrinsics_px) == ("7", 0.5, None)
    for change, text in (
        ({"count": 9}, "count must be an integer in 2..8"),
        ({"index": 2}, "index must be an integer in 0..1"),
        ({"focus_diopters": float("nan")}, "focus_diopters"),
        ({"fx": 1.0}, "fx, fy, cx, cy must all be given"),
        ({"jpeg_base64": "not base64!"}, "not valid base64"),
    ):
        with pytest.raises(FrameRejected, match=text):
            check_frame_fields({**good, **change}, max_frames_per_stack=8)
