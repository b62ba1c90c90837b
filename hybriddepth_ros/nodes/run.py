"""The main() every node shares: one-line start-up errors, a clean Ctrl-C, and rclpy errors that do not end the node.

- A bad configuration (a parameter's value or type, a malformed --ros-args or
  params file) is one line on stderr and exit status 2, never a traceback.
- SIGINT and SIGTERM (Ctrl-C, `ros2 launch` stopping) ask the node to stop: the
  executor stops between callbacks, the node is destroyed, the context shut
  down, exit status 0. rclpy's own signal handlers are not installed: they shut
  the context down at once, while a callback may still be publishing, which
  ended about one run in three with `RCLError: publisher's context is invalid`.
  A second signal at least FORCE_AFTER_S after the first interrupts a callback
  that does not return (KeyboardInterrupt).
- Once the context is down, further stop signals are ignored: the process is
  already ending. Two things would otherwise kill it with SIGINT (exit -2, "process
  has died" under launch) when the terminal's and launch's signals arrive during
  the shutdown: rclpy's `rclpy.try_shutdown` (Jazzy, Kilted) puts the default
  handler in place for a moment while it uninstalls handlers it never installed
  (so the shutdown uses `rclpy.utilities.try_shutdown`, the same call minus
  that), and Python's exit resets every handler it set to the default.
- rclpy failing to take a message (e.g. `RuntimeError: Unable to convert call
  argument` for what another program published on the same topic name) is
  logged and the node carries on (TakeTolerantExecutor); so is any other
  exception out of the executor.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from typing import Callable

import rclpy
import rclpy.utilities
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.1
"""Longest the executor waits for work before looking at a stop request, seconds."""
FORCE_AFTER_S = 2.0
"""A stop signal this long after the first one raises KeyboardInterrupt (launch and the terminal both send SIGINT at once)."""
ERROR_LOG_EVERY_S = 10.0


class StopRequest:
    """The signal handler: remembers that a stop was asked for."""

    def __init__(self) -> None:
        self.requested_at: float | None = None

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def __call__(self, signum, frame) -> None:
        now = time.monotonic()
        if self.requested_at is None:
            self.requested_at = now
        elif now - self.requested_at >= FORCE_AFTER_S:
            raise KeyboardInterrupt

    def install(self) -> None:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self)

    @staticmethod
    def ignore_further() -> None:
        """Stop signals from now on are dropped by the kernel.

        One that lands while the handler is being switched is reported by Python
        as an unraisable `OSError: Signal 2 ignored due to race condition` (30 of
        500 runs under a flood of signals); ignoring it is the point, so that
        report is not printed.
        """
        print_unraisable = sys.unraisablehook

        def drop_ignored_signal_report(unraisable) -> None:
            if not (isinstance(unraisable.exc_value, OSError) and "due to race condition" in str(unraisable.exc_value)):
                print_unraisable(unraisable)

        sys.unraisablehook = drop_ignored_signal_report
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)


class TakeTolerantExecutor(SingleThreadedExecutor):
    """A SingleThreadedExecutor that logs a message rclpy cannot take instead of raising.

    rclpy (Humble 3.3, Jazzy 7.1, Kilted 9.1: read in their executors.py) takes
    the message after marking the subscription busy and before marking it
    ready again; an error raised there leaves the subscription, and every
    callback of its mutually exclusive group, never served again. Caught inside
    the take, the error costs one message.
    """

    def __init__(self, logger, *, context=None) -> None:
        super().__init__(context=context)
        self._logger = logger

    def _take_subscription(self, sub):
        try:
            return super()._take_subscription(sub)
        except Exception as exc:  # rclpy's conversion or middleware error for this one message
            self._logger.error(
                f"could not take a message on {sub.topic_name}, carrying on: {type(exc).__name__}: {exc}",
                throttle_duration_sec=ERROR_LOG_EVERY_S,
            )
            return None


def spin_until_stopped(executor: Executor, node: Node, stop_requested: Callable[[], bool]) -> None:
    """Run callbacks until `stop_requested()` or the context ends; errors out of the executor are logged."""
    while not stop_requested() and executor.context.ok():
        try:
            executor.spin_once(timeout_sec=POLL_S)
        except ExternalShutdownException:
            break
        except Exception as exc:  # a callback's bug, an rclpy error outside a take
            if not executor.context.ok():
                break
            node.get_logger().error(
                f"error in the executor, carrying on: {type(exc).__name__}: {exc}",
                throttle_duration_sec=ERROR_LOG_EVERY_S,
            )


def _one_line(exc: BaseException) -> str:
    """The exception's text on one line, without rcl's source location (", at /path/file.c:123")."""
    text = re.sub(r",? at \S+\.c(pp)?:\d+", "", " ".join(str(exc).split()))
    return text or type(exc).__name__


def run_node(create_node: Callable[[], Node], name: str, configuration_errors: tuple[type[Exception], ...],
             args=None) -> int:
    stop = StopRequest()
    stop.install()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # malformed --ros-args, unreadable params file
        print(f"{name}: bad command line: {_one_line(exc)}", file=sys.stderr)
        return 2
    node = None
    try:
        try:
            node = create_node()
        except (*configuration_errors, InvalidParameterTypeException, InvalidParameterValueException) as exc:
            print(f"{name}: bad configuration: {_one_line(exc)}", file=sys.stderr)
            return 2
        executor = TakeTolerantExecutor(node.get_logger())
        executor.add_node(node)
        spin_until_stopped(executor, node, lambda: stop.requested)
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
    except KeyboardInterrupt:  # forced (a second signal), or before the handler was in place
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.utilities.try_shutdown()
        stop.ignore_further()
    return 0
