"""Probe a phone bridge as an adversarial user would (the probes of the hardening issue), printing numbers.

The bridge runs in its own process so that its memory can be read from
/proc: interleaved stacks from many phones, stacks left open then finished,
unauthenticated clients sending maximum-size messages (RSS before, peak and
3 s after), hundreds of idle connections, JSON nested 200000 deep, a port
outside 0..65535. `--options` are PhoneBridge keyword arguments (JSON);
`--source` probes another source tree (e.g. an older checkout) instead.
    python -m hybriddepth_ros.tools.probe_phone_bridge --probes concurrent,unauthenticated \
        --options '{"max_clients": 32, "max_pending_stacks": 32}'
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

PROBES = ("concurrent", "open_then_finish", "unauthenticated", "idle", "nested", "port")
TOKEN = "probe-token"
_BRIDGE_PROCESS = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from hybriddepth_ros.core.capture.phone.server import PhoneBridge
bridge = PhoneBridge(token=sys.argv[2], port=0, **json.loads(sys.argv[3]))
bridge.start()
print("port", bridge.port, flush=True)
completed = 0
while True:
    if bridge.pop_stack() is not None:
        completed += 1
        print("completed", completed, flush=True)
    else:
        time.sleep(0.02)
"""


class BridgeProcess:
    """A PhoneBridge in a child process: its port, stacks it completed, its RSS."""

    def __init__(self, source: str, options: dict) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BRIDGE_PROCESS, source, TOKEN, json.dumps(options)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.port = int(self.process.stdout.readline().split()[1])
        self.completed = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith("completed"):
                self.completed = int(line.split()[1])

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _jpeg_base64(level: int) -> str:
    return base64.b64encode(cv2.imencode(".jpg", np.full((48, 64, 3), level, np.uint8))[1].tobytes()).decode()


JPEGS = [_jpeg_base64(40 + 60 * i) for i in range(3)]


def frame(stack_id: str, index: int, token: str = TOKEN) -> str:
    return json.dumps({"token": token, "stack_id": stack_id, "index": index, "count": 3, "focus_diopters": 1.0 + index,
                       "jpeg_base64": JPEGS[index], "fx": 50.0, "fy": 50.0, "cx": 31.5, "cy": 23.5})


class Phone:
    """One client connection; `ask` returns the reply to a frame, counting unasked eviction notices."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.notices = 0

    async def ask(self, message: str) -> dict:
        await self.connection.send(message)
        while True:
            reply = json.loads(await asyncio.wait_for(self.connection.recv(), 30))
            if reply.get("code") == "stack_evicted" and "index" not in reply:
                self.notices += 1
                continue
            return reply


async def connect_phone(port: int) -> Phone | None:
    from websockets.asyncio.client import connect

    try:
        return Phone(await connect(f"ws://127.0.0.1:{port}/", open_timeout=20, max_size=None))
    except Exception:  # noqa: BLE001 - refused (503) or closed: counted by the caller
        return None


async def stacks_from_phones(port: int, phones: int) -> tuple[int, int, int]:
    """(stacks completed, connections refused, eviction notices) for one 3-frame stack per phone, interleaved."""
    clients = [await connect_phone(port) for _ in range(phones)]

    async def send(phone_index: int, client: Phone, index: int) -> dict:
        try:
            return await client.ask(frame(f"phone-{phone_index}", index))
        except Exception as exc:  # noqa: BLE001
            return {"type": type(exc).__name__}

    replies = []
    for index in range(3):  # every phone's frame i before any frame i + 1
        replies = await asyncio.gather(*(send(i, c, index) for i, c in enumerate(clients) if c is not None))
    completed = sum(r.get("type") == "stack_complete" for r in replies)
    for client in clients:
        if client is not None:
            await client.connection.close()
    return completed, sum(c is None for c in clients), sum(c.notices for c in clients if c is not None)


async def stacks_open_then_finished(port: int, stacks: int) -> tuple[int, int]:
    """One client opens `stacks` stacks, then finishes each: (completed, eviction notices)."""
    client = await connect_phone(port)
    for i in range(stacks):
        await client.ask(frame(f"open-{i}", 0))
    completed = 0
    for i in range(stacks):
        replies = [await client.ask(frame(f"open-{i}", index)) for index in (1, 2)]
        completed += replies[-1].get("type") == "stack_complete"
    await client.connection.close()
    return completed, client.notices


async def unauthenticated_flood(bridge: BridgeProcess, clients: int, size_bytes: int):
    """RSS before, peak and 3 s after `clients` send one `size_bytes` message with a wrong token at once."""
    message = json.dumps({"token": "wrong", "stack_id": "x", "jpeg_base64": "A" * (size_bytes - 100)})
    samples, stop = [bridge.rss_mb()], asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(bridge.rss_mb())
            await asyncio.sleep(0.05)

    async def one() -> str:
        client = await connect_phone(bridge.port)
        if client is None:
            return "refused"
        try:
            await client.connection.send(message)
            await asyncio.wait_for(client.connection.recv(), 30)
        except Exception:  # noqa: BLE001 - closed by the bridge
            pass
        await client.connection.close()
        return "sent"

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(one() for _ in range(clients)))
    await asyncio.sleep(3.0)
    stop.set()
    await sampler
    return samples[0], max(samples), bridge.rss_mb(), {r: results.count(r) for r in set(results)}


async def idle_connections(port: int, count: int, wait_s: float) -> tuple[int, int]:
    """(connections opened, still open after `wait_s`) for `count` clients that never send anything."""
    clients = [c for c in await asyncio.gather(*(connect_phone(port) for _ in range(count))) if c is not None]
    await asyncio.sleep(wait_s)
    still_open = 0
    for client in clients:
        try:
            await asyncio.wait_for(client.connection.ping(), 2)
            still_open += 1
        except Exception:  # noqa: BLE001 - closed by the bridge
            pass
        await client.connection.close()
    return len(clients), still_open


async def nested_json(port: int) -> str:
    from websockets.exceptions import ConnectionClosed

    client = await connect_phone(port)
    await client.ask(frame("nested", 0))
    nested = '{"token": "%s", "stack_id": "nested", "x": %s%s}' % (TOKEN, "[" * 200_000, "]" * 200_000)
    try:
        reply = await client.ask(nested)
        after = await client.ask(frame("nested", 1))
        return f"reply {reply.get('code')}, connection kept (next frame: {after.get('type')})"
    except ConnectionClosed as exc:
        return f"connection closed with {exc.rcvd.code if exc.rcvd else None}"


async def run(source: str, options: dict, probes: list[str]) -> None:
    def bridge() -> BridgeProcess:
        return BridgeProcess(source, options)

    if "concurrent" in probes:
        b = bridge()
        started = time.monotonic()
        completed, refused, notices = await stacks_from_phones(b.port, 30)
        await asyncio.sleep(0.5)
        print(f"30 phones, interleaved 3-frame stacks: {completed} stack_complete replies, {b.completed} stacks "
              f"taken by the consumer, {refused} connections refused, {notices} eviction notices "
              f"({time.monotonic() - started:.1f} s)")
        b.stop()
    if "open_then_finish" in probes:
        b = bridge()
        completed, notices = await stacks_open_then_finished(b.port, 6)
        print(f"one phone opens 6 stacks, then finishes them: {completed} completed, {notices} eviction notices")
        b.stop()
    if "unauthenticated" in probes:
        b = bridge()
        size = int(options.get("max_message_bytes", 8 * 1024 * 1024)) - 4096
        before, peak, after, results = await unauthenticated_flood(b, 20, size)
        print(f"20 unauthenticated clients sending {size / 2**20:.1f} MiB at once: RSS {before:.0f} MB before, "
              f"peak {peak:.0f} MB, {after:.0f} MB 3 s after; connections {results}")
        b.stop()
    if "idle" in probes:
        b = bridge()
        wait_s = float(options.get("auth_timeout_s", 10.0)) + 2.0
        opened, still_open = await idle_connections(b.port, 500, wait_s)
        print(f"500 idle connections: {opened} opened, {still_open} still open after {wait_s:.0f} s")
        b.stop()
    if "nested" in probes:
        b = bridge()
        print(f"JSON nested 200000 deep: {await nested_json(b.port)}")
        b.stop()
    if "port" in probes:
        sys.path.insert(0, source)
        from hybriddepth_ros.core.capture.phone.server import PhoneBridge

        started = time.monotonic()
        try:
            PhoneBridge(token=TOKEN, port=70000).start()
            print("port 70000: the bridge started")
        except Exception as exc:  # noqa: BLE001 - the probe reports what happened
            print(f"port 70000: {type(exc).__name__}: {exc} ({time.monotonic() - started:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated, of {', '.join(PROBES)}")
    parser.add_argument("--options", default="{}", help="PhoneBridge keyword arguments as JSON")
    parser.add_argument("--source", default=str(Path(__file__).resolve().parents[2]),
                        help="source tree whose hybriddepth_ros is probed")
    args = parser.parse_args(argv)
    probes = [p for p in args.probes.split(",") if p]
    unknown = set(probes) - set(PROBES)
    if unknown:
        parser.error(f"unknown probes {sorted(unknown)}; known: {', '.join(PROBES)}")
    asyncio.run(run(args.source, json.loads(args.options), probes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
