"""Half precision runs the same network: bf16 autocast on CPU stays close to fp32 (the GPU path uses the same code)."""

import numpy as np

from test_hybriddepth_backend import WORKING, textured_stack

from golden_fill import filled_state_dict
from hybriddepth_ros.core.hybriddepth_backend import HybridDepthBackend
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet


def test_bf16_autocast_matches_fp32_within_two_percent_and_fp16_on_cpu_runs_fp32():
    net = HybridDepthNet()
    net.load_state_dict(filled_state_dict(net, "model."))
    stack = textured_stack(*WORKING)
    depths = {}
    for precision in ("fp32", "bf16", "fp16"):
        backend = HybridDepthBackend(device="cpu", model=net, precision=precision, working_size=WORKING)
        depths[precision] = backend.estimate(stack).depth_m
        assert depths[precision].dtype == np.float32 and np.isfinite(depths[precision]).all()
    relative_error = np.abs(depths["bf16"] - depths["fp32"]) / depths["fp32"]
    assert np.median(relative_error) < 0.02
    assert not np.array_equal(depths["bf16"], depths["fp32"]), "bf16 autocast did not take effect"
    np.testing.assert_array_equal(depths["fp16"], depths["fp32"])  # no fp16 on CPU: documented fallback
