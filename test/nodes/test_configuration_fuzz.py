"""Configuration fuzz: every parameter of both nodes given values outside its set, range or type.

Each must stop the node at construction with a configuration error that names
the parameter (main() turns it into one line and exit status 2, checked on the
real executables below), never a traceback and never a silent swap to another
backend. The bad values are generated from the parameter tables, so a new
parameter is fuzzed without a new test.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.parameter import Parameter

from hybriddepth_ros.core.capture.base import CaptureError
from hybriddepth_ros.nodes.depth_fusion_node import FUSION_PARAMETERS, DepthFusionNode
from hybriddepth_ros.nodes.focus_sweep_node import SWEEP_PARAMETERS, FocusSweepNode
from hybriddepth_ros.nodes.parameters import UNSET_DOUBLE_ARRAY, ConfigurationError, ParameterSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def bad_values(spec: ParameterSpec) -> list:
    """Values `spec` must refuse: a typo of a choice, beyond each bound, NaN, infinity, another type."""
    default = spec.default
    values = []
    if spec.choices is not None:
        values.append(f"{default}_typo" if isinstance(default, str) else max(spec.choices) + 1)
    if isinstance(default, bool):
        values.append("yes")
    elif default is UNSET_DOUBLE_ARRAY:
        values += [[spec.low / 10, 1.0], [1.0, spec.high * 10], [float("nan"), 1.0], [2.0, 1.0]]
    elif isinstance(default, (int, float)):
        kind = type(default)
        if spec.high is not None:
            values.append(kind(spec.high * 10 + 1))
        if spec.low is not None:
            values.append(kind(spec.low) if spec.low_open else kind(spec.low - 1))
        if kind is float:
            values += [math.nan, math.inf, -math.inf]
        values.append("fast")
    elif isinstance(default, str):
        values += [v for v in ("", "   ", 'quote"and\\backslash', "gpu") if spec.problem(v)]
        values.append(3)
    return values


def refusal(ros_context, node_class, parameters: dict) -> Exception | None:
    """What constructing the node with `parameters` raised (None: it started, and is destroyed)."""
    context, _, _ = ros_context
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    try:
        node = node_class(context=context, parameter_overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - the test sorts out what was raised
        return exc
    node.destroy_node()
    return None


def fuzz(ros_context, node_class, specs, base: dict) -> tuple[int, list[str]]:
    problems, cases = [], 0
    for spec in specs:
        for value in bad_values(spec):
            cases += 1
            raised = refusal(ros_context, node_class, {**base, spec.name: value})
            if not isinstance(raised, ConfigurationError) or spec.name not in str(raised):
                problems.append(f"{spec.name}={value!r}: {type(raised).__name__}: {raised}")
    return cases, problems


def test_every_sweep_parameter_refuses_values_outside_its_range_set_or_type(ros_context):
    cases, problems = fuzz(ros_context, FocusSweepNode, SWEEP_PARAMETERS, {"backend": "simulated"})
    assert cases > 150
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("backend", ["focus_measure", "hybriddepth"])
def test_every_fusion_parameter_refuses_values_outside_its_range_set_or_type(ros_context, backend):
    """With the learned backend too: a typo is a configuration error, never the weight-free fallback."""
    cases, problems = fuzz(ros_context, DepthFusionNode, FUSION_PARAMETERS, {"device": "cpu", "backend": backend})
    assert cases > 50
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "parameters, words",
    [
        ({"focus_near_m": 2.0, "focus_far_m": 1.0}, "focus_near_m/focus_far_m"),
        ({"backend": "phone", "phone.token": "t", "phone.port": 0, "phone.max_decoded_pixels": 1000},
         "max_decoded_pixels"),
        ({"backend": "phone", "phone.token": "t", "phone.port": 0, "camera.fx": 1e-30}, "field of view"),
        ({"backend": "phone", "phone.token": "t", "phone.port": 0, "camera.fx": 500.0, "camera.cx": 5000.0},
         "principal point"),
        ({"backend": "phone", "phone.token": "t", "phone.port": 0, "phone.certfile": "/nonexistent/bridge.crt",
          "phone.keyfile": "/nonexistent/bridge.key"}, "/nonexistent/bridge.crt"),
        ({"backend": "phone", "phone.token": "t", "phone.port": 0, "phone.certfile": "/tmp/bridge.crt"},
         "certificate file and its private key"),
        ({"backend": "directory", "directory.path": "/nonexistent/stacks"}, "/nonexistent/stacks"),
    ],
)
def test_combinations_no_single_range_can_catch_are_configuration_errors(ros_context, parameters, words):
    raised = refusal(ros_context, FocusSweepNode, parameters)
    assert isinstance(raised, (ValueError, CaptureError)), raised  # what main() reports with exit status 2
    assert words in str(raised)


@pytest.mark.parametrize(
    "executable, arguments, words",
    [
        ("focus_sweep_node", ["-p", "rate_hz:=1e6"], "rate_hz must be <= 60.0"),
        ("focus_sweep_node", ["-p", "backend:=phone", "-p", "phone.token:=t", "-p", "camera.fx:=1e-30"],
         "field of view"),
        ("depth_fusion_node", ["-p", "backend:=hybriddepth", "-p", "precision:=fp64"], "precision must be one of"),
    ],
)
def test_the_executables_print_one_line_and_exit_2(executable, arguments, words):
    completed = subprocess.run(
        [sys.executable, "-m", f"hybriddepth_ros.nodes.{executable}", "--ros-args", *arguments],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{executable}: bad configuration: ") and words in lines[0], lines
