"""Every parameter of the pipeline's nodes, declared once: default, description, allowed values, run-time change.

A `ParameterSpec` is the one place a parameter's default lives; the defaults
come from the core's own constants where the core has one, and
config/pipeline.yaml is tested to agree with them. Nodes declare their specs
with `declare_parameters`, which attaches a ParameterDescriptor (description,
range, read_only for what needs a restart) and checks every value, so a bad
configuration is one clear line (exit 2) instead of a traceback or a silent
substitute. `ParameterUpdates` is the on-set-parameters callback: it refuses
invalid values with a reason (`ros2 param set` prints it) and hands valid
changes of run-time parameters to the node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

UNSET_DOUBLE_ARRAY = Parameter.Type.DOUBLE_ARRAY
"""Default of a list parameter that is absent unless configured (e.g. an explicit focus sweep)."""


class ConfigurationError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its default, what it means, and the values it may take.

    `low`/`high` bound numbers (inclusive unless `low_open`); `choices` lists the
    allowed values of a string or integer; `dynamic` parameters may change
    while the node runs, the others are read-only after start-up.
    """

    name: str
    default: Any
    description: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    dynamic: bool = False
    check: Callable[[Any], str | None] | None = None
    """Extra rule: returns why a value is refused, or None."""

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices is not None:
            text += f" One of: {', '.join(str(c) for c in self.choices)}."
        descriptor = ParameterDescriptor(name=self.name, description=text, read_only=not self.dynamic)
        if self.low is not None and self.high is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)
                ]
        if self.choices is not None:
            descriptor.additional_constraints = f"one of {list(self.choices)}"
        return descriptor

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if not math.isfinite(item):
                    return f"{self.name} must be finite, got {value!r}"
                if self.low is not None and (item <= self.low if self.low_open else item < self.low):
                    bound = f"> {self.low}" if self.low_open else f">= {self.low}"
                    return f"{self.name} must be {bound} (and <= {self.high}), got {value!r}"
                if self.high is not None and item > self.high:
                    return f"{self.name} must be <= {self.high}, got {value!r}"
        return self.check(value) if self.check is not None else None


def declare_parameters(node: Node, specs: Iterable[ParameterSpec]) -> dict[str, Any]:
    """Declare every spec on `node` and return the values; ConfigurationError for the first bad one.

    The value is checked by the spec first (so the message is ours and names the
    rule), then the full descriptor (range, read_only) is attached.
    """
    values = {}
    for spec in specs:
        unset_by_default = isinstance(spec.default, Parameter.Type)
        # An unset list has no range for rclpy to check, so its full descriptor goes on at once.
        first_descriptor = spec.descriptor() if unset_by_default else ParameterDescriptor(description=spec.description)
        try:
            node.declare_parameter(spec.name, spec.default, first_descriptor)
        except InvalidParameterTypeException as exc:
            raise ConfigurationError(f"{spec.name}: {exc}") from None
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = None
        reason = spec.problem(value)
        if reason:
            raise ConfigurationError(reason)
        if not unset_by_default:
            descriptor = spec.descriptor()
            descriptor.type = node.describe_parameter(spec.name).type
            node.set_descriptor(spec.name, descriptor)
        values[spec.name] = value
    return values


class ParameterUpdates:
    """The on-set-parameters callback for run-time changes.

    Each new value is checked against its spec, then `consistent(all values)`
    (cross-parameter rules, e.g. min < max) may refuse the combination; a
    valid change is passed to `apply(changed values)`. Read-only parameters
    are refused by rclpy itself, from their descriptors.
    """

    def __init__(
        self,
        node: Node,
        specs: Sequence[ParameterSpec],
        current: Mapping[str, Any],
        apply: Callable[[dict[str, Any]], None],
        consistent: Callable[[Mapping[str, Any]], str | None] = lambda values: None,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._current = dict(current)
        self._apply = apply
        self._consistent = consistent
        node.add_on_set_parameters_callback(self)

    def __call__(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue  # not ours (e.g. qos_overrides, use_sim_time): rclpy handles it
            if not spec.dynamic:
                return SetParametersResult(successful=False, reason=f"{spec.name} is read-only: restart the node to change it")
            reason = spec.problem(parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[spec.name] = parameter.value
        if changes:
            reason = self._consistent({**self._current, **changes})
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            self._apply(changes)
            self._current.update(changes)
        return SetParametersResult(successful=True)


def device_problem(value: str) -> str | None:
    """'auto', 'cpu', 'cuda' or 'cuda:N'."""
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
        return None
    return f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}"


def not_empty(name: str) -> Callable[[str], str | None]:
    return lambda value: None if value.strip() else f"{name} must not be empty"
