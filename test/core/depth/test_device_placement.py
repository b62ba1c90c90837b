"""The network never makes tensors on the CPU behind the caller's back, so it runs on a GPU as it runs here.

No GPU is available to CI, so the `meta` device stands in for one: a forward on
meta tensors fails the moment any layer mixes in a tensor it made on the CPU
(a constant, a grid, a weight buffer), exactly as it would on CUDA.
"""

import pytest
import torch

from hybriddepth_ros.core.models import alignment
from hybriddepth_ros.core.models.focus_measure import FocusMeasureDFF
from hybriddepth_ros.core.models.metric_branch import confidence_from_std
from hybriddepth_ros.core.models.hybriddepth import HybridDepthNet

HEIGHT, WIDTH, FRAMES = 96, 128, 5


def test_meta_device_catches_a_tensor_made_on_the_cpu():
    with pytest.raises(RuntimeError, match="device"):
        torch.rand(3, device="meta") * torch.ones(3)


@pytest.mark.parametrize(
    "metric_branch, method",
    [("dfv", "least_squares"), ("dfv", "confidence_weighted"), ("focus_measure", "confidence_weighted")],
)
def test_every_stage_stays_on_the_input_device(monkeypatch, metric_branch, method):
    # The one host read of the forward (refusing a sample with no usable pixel) has no meaning on meta.
    monkeypatch.setattr(alignment, "_require_support", lambda weights: None)
    branch = FocusMeasureDFF() if metric_branch == "focus_measure" else None
    net = HybridDepthNet(metric_branch=branch, alignment=method).to("meta").eval()
    device = torch.device("meta")
    aif = torch.rand(1, 3, HEIGHT, WIDTH, device=device)
    stack = torch.rand(1, FRAMES, 3, HEIGHT, WIDTH, device=device)
    distances_m = torch.linspace(0.3, 3.0, FRAMES, device=device)[None]
    valid = torch.ones(1, 1, HEIGHT, WIDTH, dtype=torch.bool, device=device)
    with torch.inference_mode():
        output = net(aif, stack, distances_m, valid)
        confidence = confidence_from_std(output.dff_std, distances_m)
    for name, tensor in {**vars(output), "confidence": confidence}.items():
        assert tensor.device == device, name
        assert tuple(tensor.shape) == (1, 1, HEIGHT, WIDTH), name
