"""The nodes as processes: Ctrl-C ends them with exit 0 every time, a bad configuration is one line and
exit 2, and an rclpy error while taking a message does not end a node (nodes/run.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rclpy.node import Node
from std_msgs.msg import String

from rclpy.executors import SingleThreadedExecutor

from hybriddepth_ros.nodes.run import TakeTolerantExecutor, spin_until_stopped
from hybriddepth_ros.tools.run_pipeline import executable_path
from support.fake_packages import fake_distribution

SUPPORT = Path(__file__).resolve().parents[1] / "support"
NODES = ("depth_fusion_node", "focus_sweep_node")


def test_twenty_ctrl_c_cycles_end_both_nodes_with_exit_0_and_no_traceback(tmp_path):
    """Both nodes started, run while stacks flow, SIGINT twice (terminal + launch); twenty times."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SUPPORT / "sigint_cycles.py"), "20", str(tmp_path)],
                            capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    cycles = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(cycles) == 20
    for cycle in cycles:
        where = f"cycle {cycle['cycle']}: {cycle['logs']}"
        assert cycle["ready"] == list(NODES), where
        assert cycle["exit_codes"] == {name: 0 for name in NODES}, where
        for log in cycle["logs"].values():
            assert "Traceback" not in log and "Error" not in log and "[ERROR]" not in log, where
    print(f"20 cycles in {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signals_flooding_in_through_shutdown_and_exit_still_end_with_exit_0(stop_signal):
    """Signals sent without pause until the process is gone land in the shutdown and in Python's exit.

    Before nodes/run.py ignored them there, 10 of 20 such runs ended with -2 inside
    rclpy's try_shutdown (its uninstall sets the default handler for a moment), and
    20 of 20 in Python's exit (which resets the handlers it set to the default).
    Over UDP only: in 3 of about 5000 such runs Fast DDS crashed (SIGSEGV) while deleting the participant,
    locking a mutex of its shared-memory transport (SharedMemChannelResource::release, seen in a core
    dump), which is not what this test is about.
    """
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="UDPv4")
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, str(SUPPORT / "bare_node.py")], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        assert child.stdout.readline().strip() == "ready", child.communicate(timeout=60)
        deadline = time.monotonic() + 1.0  # under FORCE_AFTER_S: every signal asks to stop, none forces
        while child.poll() is None and time.monotonic() < deadline:
            try:
                os.kill(child.pid, stop_signal)
            except ProcessLookupError:
                break
        _, stderr = child.communicate(timeout=60)
        assert child.returncode == 0 and "Traceback" not in stderr, (attempt, child.returncode, stderr)


def _run(node: str, *ros_args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(executable_path(node) + ["--ros-args", *ros_args], capture_output=True, text=True,
                          timeout=timeout_s)


@pytest.mark.parametrize("ros_args, words", [
    (("-p", "rate_hz:=fast"), ["bad configuration", "rate_hz", "DOUBLE"]),
    (("-p", "focus_count:=2.5"), ["bad configuration", "focus_count", "INTEGER"]),
    (("-p", "rate_hz:=0.0"), ["bad configuration", "rate_hz must be > 0.0"]),
    (("-p",), ["bad command line", "-p"]),
])
def test_a_bad_parameter_on_the_command_line_is_one_line_and_exit_2(ros_args, words):
    result = _run("focus_sweep_node", *ros_args)
    # rcl itself logs one "[ERROR] ... [rcl]" line before a malformed command line; ours is the last.
    lines = [line for line in result.stderr.splitlines() if line.strip() and "[rcl]" not in line]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("focus_sweep_node: "), result.stderr
    assert all(word in lines[0] for word in words) and ".c:" not in lines[0], lines[0]


def test_a_type_mismatch_in_the_params_file_is_one_line_and_exit_2(tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("depth_fusion_node:\n  ros__parameters:\n    device: cpu\n    working_height: 480.5\n")
    result = _run("depth_fusion_node", "--params-file", str(params))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "bad configuration" in lines[0] and "working_height" in lines[0], result.stderr


def test_the_phone_backend_with_a_too_old_websockets_is_one_line_and_exit_2(tmp_path):
    """Ubuntu 24.04's python3-websockets (10.4, as rosdep installs it) in front of the installed one."""
    fake = fake_distribution(tmp_path / "websockets_10_4", "websockets", "10.4")
    env = dict(os.environ, PYTHONPATH=f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run(executable_path("focus_sweep_node") + ["--ros-args", "-p", "backend:=phone", "-p",
                                                                     "phone.token:=secret"],
                            capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "found 10.4" in lines[0] and "pip install 'websockets>=13'" in lines[0]


def test_an_rclpy_error_while_taking_a_message_is_logged_and_the_node_carries_on(ros_context, capfd, monkeypatch):
    """rclpy raising inside its take (simulated: its own _take_subscription raises once) costs one message.

    Raised out of rclpy's take, the error would leave the subscription (and its callback group) never
    served again; the node's executor catches it inside the take.
    """
    context, _, add = ros_context
    node = add(Node("taking_node", context=context))
    executor = TakeTolerantExecutor(node.get_logger(), context=context)
    executor.add_node(node)
    received = []
    node.create_subscription(String, "chatter", received.append, 10)
    publisher = node.create_publisher(String, "chatter", 10)
    node.create_timer(0.05, lambda: publisher.publish(String(data="hello")))
    take, failed = SingleThreadedExecutor._take_subscription, []

    def take_failing_once(self, subscription):  # what rclpy raised for a message it could not convert
        if not failed:
            failed.append(True)
            raise RuntimeError("Unable to convert call argument")
        return take(self, subscription)

    monkeypatch.setattr(SingleThreadedExecutor, "_take_subscription", take_failing_once)
    deadline = time.monotonic() + 20.0
    try:
        spin_until_stopped(executor, node, lambda: len(received) >= 3 or time.monotonic() > deadline)
    finally:
        executor.remove_node(node)
        executor.shutdown()
    assert failed and len(received) >= 3, "the node went on taking messages after the error"
    err = capfd.readouterr().err
    assert "could not take a message on /chatter, carrying on: RuntimeError: Unable to convert call argument" in err
