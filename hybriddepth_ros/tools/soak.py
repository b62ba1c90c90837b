"""Soak the pipeline: run both nodes for a given time, then print throughput, drops, errors and memory slope.

Starts focus_sweep_node and depth_fusion_node as processes (as run_pipeline
does), listens to /diagnostics, samples each node's resident memory (RSS) every
`--sample-s` and fits a line to the samples after `--warmup-s`. With
`--camera phone` the soak is also the phone: it sends simulated stacks as JPEGs
over a WebSocket at `--rate-hz`, while `--hostile-clients` connections keep
sending `phone.max_message_bytes`-sized messages with a wrong token. Exit status
1 when a node exits early or memory grows by more than `--max-growth-mb` over
the fitted window.
    python -m hybriddepth_ros.tools.soak --duration-s 600 --camera phone --rate-hz 5 --hostile-clients 4
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from ..core.capture.phone.protocol import DEFAULT_MAX_MESSAGE_BYTES
from ..core.capture.simulated import SimulatedCapture
from ..core.stack.focal_stack import diopter_sweep
from ..nodes.diagnostics import FUSION_DIAGNOSTIC_NAME, SWEEP_DIAGNOSTIC_NAME
from ..pipeline_plan import DEPTH_BACKENDS, default_params_file, pipeline_plan
from .run_pipeline import start_nodes, stop_nodes

CAMERAS = ("simulated", "phone")


@dataclass
class DiagnosticTally:
    """What the nodes said on /diagnostics during the soak."""

    published: int = 0
    sweep_errors: int = 0
    sweep_warnings: int = 0
    fused: int = 0
    fusion_errors: int = 0
    dropped: int = 0
    first_errors: list[str] = field(default_factory=list)
    last_sweep_values: dict[str, str] = field(default_factory=dict)


class DiagnosticsListener(Node):
    def __init__(self) -> None:
        super().__init__("hybriddepth_soak")
        self.tally = DiagnosticTally()
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        tally = self.tally
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.level == DiagnosticStatus.ERROR and len(tally.first_errors) < 5:
                tally.first_errors.append(f"{status.name}: {status.message}")
            if status.name == SWEEP_DIAGNOSTIC_NAME:
                tally.last_sweep_values.update(values)
                if status.level == DiagnosticStatus.ERROR:
                    tally.sweep_errors += 1
                elif status.message.startswith("stack published"):
                    tally.published += 1
                if status.level == DiagnosticStatus.WARN:
                    tally.sweep_warnings += 1
            elif status.name == FUSION_DIAGNOSTIC_NAME:
                if status.level == DiagnosticStatus.ERROR:
                    tally.fusion_errors += 1
                else:
                    tally.fused += 1
                    if values.get("stacks_dropped", "unknown").isdigit():
                        tally.dropped += int(values["stacks_dropped"])


def rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` in MB, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def rss_trend(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, float] | None:
    """First/last/min/max RSS after `warmup_s` and the least-squares slope in MB per minute."""
    kept = [(t, mb) for t, mb in samples if t >= warmup_s]
    if len(kept) < 3:
        return None
    times_s, values_mb = np.array(kept).T
    slope_mb_per_s = float(np.polyfit(times_s, values_mb, 1)[0])
    return {
        "first_mb": float(values_mb[0]), "last_mb": float(values_mb[-1]),
        "min_mb": float(values_mb.min()), "max_mb": float(values_mb.max()),
        "slope_mb_per_min": slope_mb_per_s * 60.0, "window_s": float(times_s[-1] - times_s[0]),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PhoneTraffic:
    """A phone sending one simulated stack per period, and hostile clients with the wrong token.

    Runs its own event loop in a thread; counts what the bridge answered.
    """

    def __init__(self, port: int, token: str, rate_hz: float, width: int, height: int, focus_count: int,
                 hostile_clients: int, hostile_bytes: int) -> None:
        from websockets.asyncio.client import connect

        self._connect = connect
        self.url = f"ws://127.0.0.1:{port}/"
        self.token = token
        self.period_s = 1.0 / rate_hz
        self.hostile_clients = hostile_clients
        self.hostile_message = json.dumps({"token": "not-the-token", "jpeg_base64": "A" * max(0, hostile_bytes - 64)})
        self.stacks = self._encoded_stacks(width, height, focus_count)
        self.replies: dict[str, int] = {}
        self.hostile_refused = 0
        self.hostile_turned_away = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="soak-phone", daemon=True)

    @staticmethod
    def _encoded_stacks(width: int, height: int, focus_count: int) -> list[list[dict]]:
        """Frame messages (without token and stack id) of a few simulated scenes, encoded once."""
        distances_m = diopter_sweep(0.3, 5.0, focus_count).tolist()
        camera = SimulatedCapture(distances_m, width, height, seed=0, scene_change_every=1)
        stacks = []
        for _ in range(3):
            stack = camera.capture_stack()
            intrinsics = stack.intrinsics
            frames = []
            for index, (rgb, distance_m) in enumerate(zip(stack.frames, stack.focus_distances_m)):
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
                frame = {"index": index, "count": stack.num_frames, "focus_diopters": 1.0 / float(distance_m),
                         "jpeg_base64": base64.b64encode(jpeg.tobytes()).decode()}
                if index == 0:
                    frame.update(fx=intrinsics.fx, fy=intrinsics.fy, cx=intrinsics.cx, cy=intrinsics.cy)
                frames.append(frame)
            stacks.append(frames)
        return stacks

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._phone())]
        tasks += [asyncio.create_task(self._hostile()) for _ in range(self.hostile_clients)]
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _count(self, reply: dict) -> None:
        key = reply.get("type") if reply.get("type") != "error" else f"error:{reply.get('code')}"
        self.replies[key] = self.replies.get(key, 0) + 1

    async def _phone(self) -> None:
        sent = 0
        while True:
            try:
                async with self._connect(self.url, open_timeout=10, max_size=None) as client:
                    while True:
                        started = time.monotonic()
                        for frame in self.stacks[sent % len(self.stacks)]:
                            await client.send(json.dumps({"token": self.token, "stack_id": f"soak-{sent}", **frame}))
                            while True:
                                reply = json.loads(await asyncio.wait_for(client.recv(), 30))
                                self._count(reply)
                                if "index" in reply or reply.get("type") != "error":
                                    break
                        sent += 1
                        await asyncio.sleep(max(0.0, self.period_s - (time.monotonic() - started)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the bridge may not be up yet; count and retry
                self._count({"type": "error", "code": f"client:{type(exc).__name__}"})
                await asyncio.sleep(1.0)

    async def _hostile(self) -> None:
        while True:
            try:
                async with self._connect(self.url, open_timeout=10, max_size=None) as client:
                    await client.send(self.hostile_message)
                    await asyncio.wait_for(client.recv(), 30)
                    self.hostile_refused += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - 503 at the connection cap, or closed by the bridge
                self.hostile_turned_away += 1
            await asyncio.sleep(0.5)


def machine_load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="RSS samples before this are not fitted")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--camera", default="simulated", choices=CAMERAS)
    parser.add_argument("--depth-backend", default="focus_measure", choices=DEPTH_BACKENDS)
    parser.add_argument("--rate-hz", type=float, default=5.0, help="stacks per second the camera (or phone) makes")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--focus-count", type=int, default=5)
    parser.add_argument("--hostile-clients", type=int, default=0, help="with --camera phone")
    parser.add_argument("--max-growth-mb", type=float, default=10.0,
                        help="largest RSS growth of a node over the fitted window (slope x window) still called flat")
    parser.add_argument("--params-file", default=default_params_file())
    args = parser.parse_args(argv)

    plan = pipeline_plan(args.params_file, camera_backend=args.camera, depth_backend=args.depth_backend,
                         device="cpu")
    sweep_plan, fusion_plan = plan
    sweep_plan.overrides.update(width=args.width, height=args.height, focus_count=args.focus_count,
                                rate_hz=min(60.0, args.rate_hz if args.camera == "simulated" else 2 * args.rate_hz))
    traffic = None
    if args.camera == "phone":
        port, token = free_port(), secrets.token_hex(16)
        sweep_plan.overrides.update({"phone.port": port, "phone.token": token})
        traffic = PhoneTraffic(port, token, args.rate_hz, args.width, args.height, args.focus_count,
                               args.hostile_clients, DEFAULT_MAX_MESSAGE_BYTES - 1024)
    print(f"soak: {args.duration_s:.0f} s, {args.camera} camera at {args.rate_hz:g} Hz, "
          f"{args.width}x{args.height} x {args.focus_count} frames, depth {args.depth_backend}, "
          f"{args.hostile_clients} hostile clients; load before: {machine_load()}", flush=True)

    rclpy.init()
    listener = DiagnosticsListener()
    processes = start_nodes(plan)
    names = [node.name for node in plan]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    started = time.monotonic()
    next_sample = started
    exited_early = []
    try:
        if traffic is not None:
            traffic.start()
        while time.monotonic() - started < args.duration_s:
            rclpy.spin_once(listener, timeout_sec=0.2)
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + args.sample_s
                for name, process in zip(names, processes):
                    mb = rss_mb(process.pid) if process.poll() is None else None
                    if mb is not None:
                        samples[name].append((now - started, mb))
            exited_early = [name for name, process in zip(names, processes) if process.poll() is not None]
            if exited_early:
                break
    except KeyboardInterrupt:
        print("soak: interrupted; reporting what was measured")
    finally:
        if traffic is not None:
            traffic.stop()
        stop_nodes(processes)
        listener.destroy_node()
        rclpy.try_shutdown()

    elapsed_s = time.monotonic() - started
    tally = listener.tally
    print(f"ran {elapsed_s:.0f} s; load after: {machine_load()}")
    print(f"stacks published: {tally.published}, fused: {tally.fused} ({tally.fused / max(elapsed_s, 1e-9):.2f}/s), "
          f"dropped before fusion: {tally.dropped}, sweep errors: {tally.sweep_errors}, "
          f"fusion errors: {tally.fusion_errors}, sweep warnings: {tally.sweep_warnings}")
    for error in tally.first_errors:
        print(f"  error: {error}")
    if traffic is not None:
        phone_values = {k: v for k, v in tally.last_sweep_values.items() if k.startswith("phone.")}
        print(f"phone replies: {dict(sorted(traffic.replies.items()))}; hostile messages refused: "
              f"{traffic.hostile_refused}, hostile connections turned away: {traffic.hostile_turned_away}")
        print(f"bridge counters: {phone_values}")
    growing = []
    for name in names:
        trend = rss_trend(samples[name], args.warmup_s)
        if trend is None:
            print(f"{name} RSS: too few samples after the {args.warmup_s:.0f} s warm-up")
            continue
        growth_mb = trend["slope_mb_per_min"] * trend["window_s"] / 60.0
        flat = growth_mb <= args.max_growth_mb
        if not flat:
            growing.append(name)
        print(f"{name} RSS: {trend['first_mb']:.1f} -> {trend['last_mb']:.1f} MB after warm-up "
              f"(min {trend['min_mb']:.1f}, max {trend['max_mb']:.1f}), slope {trend['slope_mb_per_min']:+.3f} MB/min "
              f"= {growth_mb:+.1f} MB over {trend['window_s']:.0f} s: {'flat' if flat else 'GROWING'}")
    if exited_early:
        print(f"soak: {', '.join(exited_early)} exited early; see its log above")
    return 1 if exited_early or growing else 0


if __name__ == "__main__":
    sys.exit(main())
