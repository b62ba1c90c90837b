"""What every metric (depth-from-focus) branch of HybridDepthNet returns, and how its std reads as confidence.

A metric branch maps (focal_stack (B,N,3,H,W), focus_distances_m (B,N)) to
(depth_m, std_m), each (B,1,H,W) float32 in metres: DFV returns the softmax
expectation of the focus distance and its std; the weight-free focus measure
returns its peak and a std mapped from its confidence by `std_from_confidence`.

Confidence is ``1 - std / (0.5 * (d_max - d_min))`` clipped to [0, 1], where
d_min, d_max are the nearest and farthest focus distances. Half the sweep range
is the largest std a distribution over the sweep can have, so a certain pixel
scores 1 and a pixel torn between the two ends of the sweep scores 0.
"""

from __future__ import annotations

import torch


def confidence_from_std(dff_std_m: torch.Tensor, focus_distances_m: torch.Tensor) -> torch.Tensor:
    """1 - std / (half the sweep range), clipped to [0, 1]; see the module docstring."""
    half_range_m = 0.5 * (focus_distances_m.max() - focus_distances_m.min())
    return (1.0 - dff_std_m / half_range_m).clamp(0.0, 1.0)


def std_from_confidence(confidence: torch.Tensor, focus_distances_m: torch.Tensor) -> torch.Tensor:
    """The inverse of `confidence_from_std` for one stack's (N,) distances."""
    half_range_m = 0.5 * (focus_distances_m.max() - focus_distances_m.min())
    return (1.0 - confidence) * half_range_m
