"""DepthFusion, the one place that validates and registers stacks before a backend sees them, and masks its output."""

import dataclasses

import numpy as np
import pytest

import hybriddepth_ros.core.depth.fusion as fusion_module
from hybriddepth_ros.core.depth.base import DepthBackend, DepthResult
from hybriddepth_ros.core.depth.fusion import DepthFusion
from hybriddepth_ros.core.stack.focal_stack import FocalStackError
from support.stacks import DISTANCES_M, WORKING, textured_stack


class ConstantBackend(DepthBackend):
    """Depth 1.5 m with confidence 0.8 everywhere; records the stacks it is given."""

    name = "constant"

    def __init__(self):
        self.seen = []

    def _estimate(self, stack):
        self.seen.append(stack)
        shape = (stack.height, stack.width)
        return DepthResult(np.full(shape, 1.5, np.float32), np.full(shape, 0.8, np.float32), {"constant": 0.0})


@pytest.mark.parametrize(
    "distances_m, problem",
    [([0.4, 0.7, 0.7, 2.0], "duplicated"), ([0.4, np.nan, 1.2, 2.0], "finite"), ([0.4, 0.7, 0.0, 2.0], "> 0 m"),
     ([0.4, 1.2, 0.7, 2.0], "strictly increasing"), ([0.4, 0.7, 1.2], "4 frames but 3 focus distances")],
)
def test_unusable_focus_distances_are_refused_not_fused(distances_m, problem):
    backend = ConstantBackend()
    stack = dataclasses.replace(textured_stack(*WORKING), focus_distances_m=np.array(distances_m))
    with pytest.raises(FocalStackError, match=problem):
        DepthFusion(backend).process(stack)
    assert backend.seen == [], "the backend never sees a stack that failed validation"


def test_unregistered_stack_is_registered_once_before_the_backend(monkeypatch):
    calls = []

    class Registered:
        def __init__(self, stack):
            mask = np.ones((stack.height, stack.width), dtype=bool)
            mask[-8:, :] = False
            self.stack = dataclasses.replace(stack, registered=True, valid_mask=mask)

    def fake_register(stack, **options):
        calls.append(stack.frames.shape)
        return Registered(stack)

    monkeypatch.setattr(fusion_module, "register_stack", fake_register)
    backend = ConstantBackend()
    fused = DepthFusion(backend).process(textured_stack(192, 256, registered=False))
    assert calls == [(len(DISTANCES_M), 192, 256, 3)], "registration runs once, at the stack's size"
    assert backend.seen[0].registered and backend.seen[0].valid_mask is not None
    assert np.all(np.isnan(fused.depth_m[-8:])) and np.all(fused.depth_m[:-8] == 1.5)
    assert np.all(fused.confidence[-8:] == 0), "confidence is 0 wherever depth is NaN"
    assert "registration" in fused.timings_s and "constant" in fused.timings_s


def test_registered_stack_is_not_registered_again(monkeypatch):
    monkeypatch.setattr(fusion_module, "register_stack", lambda stack, **options: pytest.fail("registered twice"))
    DepthFusion(ConstantBackend()).process(textured_stack(*WORKING))


@pytest.mark.parametrize(
    "settings, published",
    [({}, True), ({"max_depth_m": 1.0}, False), ({"min_depth_m": 2.0, "max_depth_m": 5.0}, False),
     ({"confidence_threshold": 0.9}, False), ({"confidence_threshold": 0.8}, True)],
)
def test_range_and_confidence_masks(settings, published):
    fused = DepthFusion(ConstantBackend(), **settings).process(textured_stack(*WORKING))
    assert np.all(np.isfinite(fused.depth_m)) == published
    assert np.all(np.isnan(fused.depth_m)) != published
    assert np.all((fused.confidence == 0.8) if published else (fused.confidence == 0))


@pytest.mark.parametrize(
    "settings", [{"min_depth_m": 0.0}, {"min_depth_m": 3.0, "max_depth_m": 2.0}, {"confidence_threshold": 1.5}]
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        DepthFusion(ConstantBackend(), **settings)
