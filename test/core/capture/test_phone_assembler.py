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


class Clock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self):
        return self.now_s


FRAME_PX = 48 * 64


def test_pixels_are_reserved_before_decoding_and_released_on_every_path():
    assembler = StackAssembler(max_decoded_pixels=10 * FRAME_PX)
    first, rgb = frame(index=0, count=2)
    assembler.admit(first, 64, 48)
    assert assembler.held_pixels == FRAME_PX, "reserved from the header size, before decoding"
    assembler.cancel(first)
    assert assembler.held_pixels == 0 and assembler.pending_stacks == 0, "a failed decode leaves nothing"
    assembler.add_frame(first, rgb)
    assembler.add_frame(*frame(index=1, count=2, focus_m=2.0))
    assert assembler.held_pixels == 2 * FRAME_PX, "the completed stack waits for the consumer"
    assembler.pop_stack()
    assert assembler.held_pixels == 0
    with pytest.raises(FrameRejected, match="bad_stack|duplicated") as refused:
        assembler.add_frame(*frame("dup", index=0, count=2, focus_m=1.0))
        assembler.add_frame(*frame("dup", index=1, count=2, focus_m=1.0))
    assert refused.value.code == "bad_stack" and assembler.held_pixels == 0


def test_a_full_budget_refuses_new_frames_after_dropping_unconsumed_stacks():
    assembler = StackAssembler(max_decoded_pixels=3 * FRAME_PX)
    for i in range(2):
        assembler.add_frame(*frame("done", index=i, count=2, focus_m=1.0 + i))
    assembler.add_frame(*frame("open", index=0, count=3))
    assembler.add_frame(*frame("open", index=1, count=3, focus_m=2.0))  # drops "done" to make room
    assert assembler.stacks_dropped == 1 and assembler.pop_stack() is None
    with pytest.raises(FrameRejected) as refused:
        assembler.add_frame(*frame("other", index=0, count=2))
        assembler.add_frame(*frame("other", index=1, count=2, focus_m=3.0))
    assert refused.value.code == "over_budget"
    assert assembler.held_pixels == 3 * FRAME_PX


def test_evictions_name_the_owner_and_the_stack_stays_closed():
    clock = Clock()
    assembler = StackAssembler(max_pending_stacks=2, max_stacks_per_client=1, stack_timeout_s=5.0, clock=clock)
    phone_a, phone_b, phone_c = object(), object(), object()
    assembler.add_frame(*frame("a1"), owner=phone_a)
    assembler.add_frame(*frame("b1"), owner=phone_b)
    with pytest.raises(FrameRejected) as busy:
        assembler.add_frame(*frame("c1"), owner=phone_c)
    assert busy.value.code == "busy" and assembler.take_evictions() == []
    assembler.add_frame(*frame("a2"), owner=phone_a)  # a's own older stack goes
    [own] = assembler.take_evictions()
    assert (own.stack_id, own.owner, own.received, own.count) == ("a1", phone_a, 1, 3)
    assert own.notice()["code"] == "stack_evicted" and own.notice()["stack_id"] == "a1"
    clock.now_s = 6.0
    assembler.add_frame(*frame("c1"), owner=phone_c)  # b1 is stale: its slot is taken
    [stale] = assembler.take_evictions()
    assert (stale.stack_id, stale.owner) == ("b1", phone_b) and "no frame for 5 s" in stale.reason
    with pytest.raises(FrameRejected) as closed:
        assembler.add_frame(*frame("b1", index=1), owner=phone_b)
    assert closed.value.code == "stack_evicted"
    clock.now_s = 20.0
    assembler.expire_stale()
    assert {e.stack_id for e in assembler.take_evictions()} == {"a2", "c1"}
    assert assembler.pending_stacks == 0 and assembler.held_pixels == 0
    assembler.add_frame(*frame("b1"), owner=phone_b)  # long after its eviction, the id may be used again
    assert assembler.pending_stacks == 1
