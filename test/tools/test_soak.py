"""The soak tool's parts: its phone and hostile clients against a real bridge, and the RSS trend it reports."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("rclpy")

from hybriddepth_ros.core.capture.phone.server import PhoneBridge  # noqa: E402
from hybriddepth_ros.tools.soak import PhoneTraffic, rss_trend  # noqa: E402


def test_rss_trend_fits_the_samples_after_the_warm_up():
    samples = [(t, 500.0 if t < 10 else 100.0 + 0.5 * t / 60.0) for t in range(0, 130, 5)]
    trend = rss_trend(samples, warmup_s=10.0)
    assert trend["slope_mb_per_min"] == pytest.approx(0.5)
    assert trend["max_mb"] < 102.0 and trend["window_s"] == 115.0
    assert rss_trend(samples[:3], warmup_s=10.0) is None


def test_the_soak_phone_completes_stacks_while_hostile_clients_are_refused():
    bridge = PhoneBridge(token="soak-token", port=0, max_message_bytes=256 * 1024)
    bridge.start()
    traffic = PhoneTraffic(bridge.port, "soak-token", rate_hz=10.0, width=64, height=48, focus_count=3,
                           hostile_clients=2, hostile_bytes=200 * 1024)
    try:
        traffic.start()
        deadline = time.monotonic() + 20.0
        popped = []
        while time.monotonic() < deadline and (len(popped) < 3 or traffic.hostile_refused < 2):
            stack = bridge.pop_stack()
            if stack is not None:
                popped.append(stack)
            time.sleep(0.02)
    finally:
        traffic.stop()
        bridge.close()
    assert len(popped) >= 3 and all(stack.num_frames == 3 for stack in popped)
    assert traffic.replies.get("stack_complete", 0) >= 3 and traffic.hostile_refused >= 2
    assert bridge.counters.totals().get("unauthorized", 0) >= 2
    assert not any(key.startswith("error:") and "client" not in key for key in traffic.replies), traffic.replies
