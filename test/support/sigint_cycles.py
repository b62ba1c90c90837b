"""Start the pipeline's two nodes, Ctrl-C them, and record how they ended; N times.

    python test/support/sigint_cycles.py CYCLES LOG_DIR  ->  one JSON line per cycle on stdout

Each cycle runs the nodes' real main() (nodes/run.py: rclpy.init, the node,
the executor, the signal handling, the shutdown) in child processes forked
from this one, which imported the node modules once: a cycle then costs a node
start-up, not a torch import (8 s on the 2 shared cores of CI), so twenty cycles
fit in a test. The sweep node runs a small simulated camera at 10 stacks/s so
that SIGINT lands while stacks are being published and fused. Each node gets
SIGINT twice, 0-0.1 s apart, as under `ros2 launch` (the terminal's and launch's). The installed executables themselves are
stopped the same way in test/test_launch.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

from hybriddepth_ros.nodes import depth_fusion_node, focus_sweep_node

NODES = {
    "focus_sweep_node": (focus_sweep_node.main, "focus sweep ready",
                         ["-p", "width:=160", "-p", "height:=120", "-p", "focus_count:=5", "-p", "rate_hz:=10.0"]),
    "depth_fusion_node": (depth_fusion_node.main, "depth fusion ready", ["-p", "device:=cpu"]),
}
READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 20.0


def fork_node(name: str, log_path: Path) -> int:
    main, _, parameters = NODES[name]
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = main([name, "--ros-args", *parameters])
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def wait_exit(pid: int, timeout_s: float) -> int | None:
    """Exit status (negative: killed by that signal), or None if it did not end in time (then killed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def cycle(index: int, log_dir: Path, rng: random.Random) -> dict:
    logs = {name: log_dir / f"{index:02d}_{name}.log" for name in NODES}
    pids = {name: fork_node(name, logs[name]) for name in NODES}
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = set()
    while time.monotonic() < deadline and len(ready) < len(NODES):
        ready = {name for name in NODES if logs[name].exists() and NODES[name][1] in logs[name].read_text()}
        time.sleep(0.05)
    time.sleep(rng.uniform(0.3, 1.0))  # stacks flow meanwhile
    # Ctrl-C on `ros2 launch`: the terminal sends SIGINT to every process, and launch sends its own.
    for pid in pids.values():
        os.kill(pid, signal.SIGINT)
    time.sleep(rng.uniform(0.0, 0.1))
    for pid in pids.values():
        os.kill(pid, signal.SIGINT)
    codes = {name: wait_exit(pid, EXIT_TIMEOUT_S) for name, pid in pids.items()}
    return {"cycle": index, "ready": sorted(ready), "exit_codes": codes,
            "logs": {name: logs[name].read_text() for name in NODES}}


def main() -> int:
    cycles, log_dir = int(sys.argv[1]), Path(sys.argv[2])
    rng = random.Random(9)
    for index in range(cycles):
        print(json.dumps(cycle(index, log_dir, rng)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
