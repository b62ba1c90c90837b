"""core.time_sync: nearest-stamp pairing within the slop, queue bound, late and out-of-order messages,
and the same pairs as message_filters' ApproximateTimeSynchronizer when that is installed."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from hybriddepth_ros.core.capture.time_sync import ApproximatePairer

MS = 1_000_000  # nanoseconds


def test_pairs_nearest_stamp_within_slop_in_input_order():
    pairer = ApproximatePairer(queue_size=10, slop_s=0.02)
    assert pairer.add(0, 100 * MS, "image@100") is None
    assert pairer.add(0, 130 * MS, "image@130") is None
    # 125 is 25 ms from 100 (beyond slop) and 5 ms from 130: pairs with 130, input 0 first.
    assert pairer.add(1, 125 * MS, "state@125") == ("image@130", "state@125")
    # 130 left the queue with its partner; 100 is still waiting and pairs with a close state.
    assert pairer.add(1, 110 * MS, "state@110") == ("image@100", "state@110")
    assert pairer.add(1, 200 * MS, "state@200") is None


def test_slop_is_strict_at_the_boundary_and_signed_either_way():
    pairer = ApproximatePairer(queue_size=10, slop_s=0.02)
    pairer.add(0, 1_000 * MS, "image")
    assert pairer.add(1, 1_020 * MS, "state 20 ms later") is None  # exactly slop: no pair
    assert pairer.add(1, 1_000 * MS - 19_999_999, "state 19.999999 ms earlier") == (
        "image", "state 19.999999 ms earlier",
    )


def test_ties_go_to_the_message_queued_first():
    pairer = ApproximatePairer(queue_size=10, slop_s=0.02)
    pairer.add(1, 110 * MS, "state@110")
    pairer.add(1, 90 * MS, "state@90")
    assert pairer.add(0, 100 * MS, "image@100") == ("image@100", "state@110")


def test_queue_keeps_the_newest_stamps_and_drops_late_arrivals_when_full():
    pairer = ApproximatePairer(queue_size=3, slop_s=0.005)
    for stamp_ms in (10, 20, 30, 40):  # 10 is dropped when 40 arrives
        assert pairer.add(0, stamp_ms * MS, f"image@{stamp_ms}") is None
    assert pairer.add(1, 10 * MS, "state@10") is None
    assert pairer.add(1, 20 * MS, "state@20") == ("image@20", "state@20")
    # Out of order but still among the newest three: queued and pairs later.
    assert pairer.add(0, 25 * MS, "image@25") is None
    assert pairer.add(1, 26 * MS, "state@26") == ("image@25", "state@26")
    # A full queue (30, 40, 50) drops a newcomer older than all of it at once.
    assert pairer.add(0, 50 * MS, "image@50") is None
    assert pairer.add(0, 5 * MS, "image@5") is None  # older than all of a full queue: dropped on arrival
    assert pairer.add(1, 5 * MS, "state@5") is None
    assert pairer.add(1, 31 * MS, "state@31") == ("image@30", "state@31")


def test_same_stamp_replaces_the_queued_message():
    pairer = ApproximatePairer(queue_size=10, slop_s=0.01)
    pairer.add(0, 100 * MS, "first image@100")
    pairer.add(0, 100 * MS, "second image@100")
    assert pairer.add(1, 100 * MS, "state@100") == ("second image@100", "state@100")
    assert pairer.add(1, 101 * MS, "state@101") is None


def test_rejects_bad_configuration_and_input_index():
    with pytest.raises(ValueError, match="queue_size"):
        ApproximatePairer(queue_size=0, slop_s=0.01)
    with pytest.raises(ValueError, match="slop_s"):
        ApproximatePairer(queue_size=5, slop_s=0.0)
    with pytest.raises(ValueError, match="input_index"):
        ApproximatePairer(queue_size=5, slop_s=0.01).add(2, 0, "x")


def test_concurrent_adds_pair_every_message_exactly_once():
    pairer = ApproximatePairer(queue_size=1000, slop_s=0.0005)
    pairs, pairs_lock = [], threading.Lock()

    def feed(input_index: int) -> None:
        for k in range(500):
            pair = pairer.add(input_index, k * MS, (input_index, k))
            if pair is not None:
                with pairs_lock:
                    pairs.append(pair)

    threads = [threading.Thread(target=feed, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(pairs) == [((0, k), (1, k)) for k in range(500)]


def _random_streams(seed: int, count: int = 300):
    """Two interleaved streams at ~30 Hz with jitter, offsets, duplicates and out-of-order arrival."""
    rng = np.random.default_rng(seed)
    arrivals = []
    for k in range(count):
        base_ns = 1_000_000_000 + k * 33 * MS
        arrivals.append((float(k), 0, base_ns + int(rng.integers(-3, 4)) * MS))
        if rng.random() > 0.15:  # some focus states never come
            arrivals.append((k + rng.uniform(-1.5, 1.5), 1, base_ns + int(rng.normal(0, 12)) * MS))
        if rng.random() < 0.05:  # a repeated stamp
            arrivals.append((k + 0.5, int(rng.integers(0, 2)), base_ns))
    arrivals.sort(key=lambda arrival: arrival[0])
    return [(input_index, stamp_ns) for _, input_index, stamp_ns in arrivals]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("queue_size,slop_s", [(10, 0.02), (3, 0.015), (1, 0.03)])
def test_same_pairs_as_message_filters(seed, queue_size, slop_s):
    message_filters = pytest.importorskip("message_filters")
    from builtin_interfaces.msg import Time

    inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
    reference = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop_s)
    reference_pairs = []
    reference.registerCallback(lambda first, second: reference_pairs.append((first.label, second.label)))
    pairer = ApproximatePairer(queue_size, slop_s)
    pairs = []
    for label, (input_index, stamp_ns) in enumerate(_random_streams(seed)):
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        msg = SimpleNamespace(header=SimpleNamespace(stamp=stamp), label=label)
        inputs[input_index].signalMessage(msg)
        pair = pairer.add(input_index, stamp_ns, msg)
        if pair is not None:
            pairs.append((pair[0].label, pair[1].label))
    assert len(pairs) > 20
    assert pairs == reference_pairs
