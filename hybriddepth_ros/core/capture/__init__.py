"""Capture backends that produce focal stacks (ROS-free, but for the driver backend in nodes/).

A new camera is a CaptureBackend subclass here (see base.py), a name below,
and its parameters and build branch in nodes/capture_backends.py.
"""

CAPTURE_BACKENDS = ("simulated", "v4l2", "driver", "directory", "phone")
