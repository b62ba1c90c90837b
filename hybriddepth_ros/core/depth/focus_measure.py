"""The weight-free depth backend: focus-measure DFF (core.models.focus_measure), densified edge-aware (core.depth.densify).

No weights, no download: the default backend and the fallback when the
HybridDepth network has none. The physics and the confidence of measured
pixels are described in core/models/focus_measure.py; how the pixels without
a focus cue get depth, and what their confidence means, in core/depth/densify.py.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..models.blur_equalisation import blur_equalised_depth
from ..models.focus_measure import (
    DEFAULT_BLUR_RATE_STACKS,
    LUMA_WEIGHTS,
    OCCLUDER_MIN_RISE,
    BlurRatePool,
    BlurRates,
    FocusMeasureDFF,
    PeakFit,
    RelativeBlur,
    VertexPairs,
    box_max,
    box_mean,
    defocus_blended_depth,
    end_defocus_depth,
    end_defocus_error_d,
    flat_run_end_depth,
    modified_laplacian,
    occluder_peak_curves,
    opencv_applies,
    peak_at_flat_end,
    two_peaked,
)
from ..stack.focal_stack import FocalStack
from .base import DepthBackend, DepthResult
from .densify import (
    DEFAULT_DECAY_PX,
    DEFAULT_GUIDE_SIGMA,
    DEFAULT_SEED_MIN_CONFIDENCE,
    DEFAULT_SMOOTHNESS,
    UPSAMPLE_SIGMA_FRACTION,
    DensifyParams,
    densify,
    edge_snapped,
    inverse_depth_extremes,
    joint_upsample,
    luminance,
    sum_pool_2x2,
)
from .device import resolve_device

DEFAULT_WINDOW_PX = 9
"""Side of the focus-measure window (odd)."""
DEFAULT_CURVE_EXPONENT = -3.0
"""Box-Cox exponent of the peak fit: -3 for disc blur (real lenses); -2 in NYU_PROTOCOL_SETTINGS."""
DEFAULT_DENSIFY = True
DEFAULT_END_PEAK_WEIGHT = 1.0
"""Confidence factor of pixels sharpest in the first or last frame when they anchor the fill: their
depth is the end of the sweep (refined towards its neighbour), right when the sweep spans the scene."""
DEFAULT_END_DEFOCUS = True
"""In the dense path, re-estimate pixels sharpest in the first or last frame by depth from defocus
between that frame and its neighbour (core.models.focus_measure.end_defocus_depth) instead of the
three-frame parabola's bound."""
DEFAULT_DEFOCUS_BLEND = True
"""In the dense path, average each measured pixel's focus peak with its depth from relative blur between
its peak frame and the frame on its vertex's side (core.models.focus_measure.defocus_blended_depth)."""
DEFAULT_OCCLUDER_PEAK = True
"""In the dense path, a flat pixel whose focus curve has two peaks takes the nearer one, its occlusion
edge's (core.models.focus_measure.occluder_peak_curves), and anchors the fill although it is flat.
Seeds 1000-1019 (tools/evaluate_weight_free.py), dense AbsRel without -> with: simulated 5 frames 0.149 ->
0.119, 10 frames 0.112 -> 0.060; NYU protocol at 0.8-6 m 0.135 -> 0.128. Seeds 2000-2009: 0.147 -> 0.148,
0.105 -> 0.077 and 0.147 -> 0.144."""
OCCLUDER_FLAT_SHARE = 0.6
"""A pixel is flat for occluder_peak when its own 3x3 texture (modified Laplacian, its largest over the
frames) is below this share of its window's (own_texture_share). The inside of a coarse texture's
squares is flat too, and next to a nearer object reads that object's depth: a band of about a window
around it. Dense AbsRel for 0.8, 0.6, 0.4 (without: in brackets): seeds 1000-1019, 5 frames, sim 0.117,
0.119, 0.140 (0.149) and nyu_far 0.125, 0.128, 0.131 (0.135); `make demo`'s 10-frame checkered scene
0.0521, 0.0500, 0.0482 (0.0476)."""
INDIRECT_ANCHOR_CONFIDENCE_SCALE = 0.5
"""Published confidence of indirect anchors (end-of-sweep pixels, and occluder_peak's and front_edge's flat
pixels) relative to a measurement's: the true depth may lie beyond the sweep, and a flat pixel reads its
edge's depth, not its own."""
DEPTH_EDGE_SPREAD = 0.1
"""A focus peak whose 3x3 neighbours' peaks (on the fill's grid) span more than this share of depth has a
window across a depth edge, which mixes two surfaces: it still anchors the fill, as an indirect anchor,
but is not counted measured (depth_edge_peaks). Measured AbsRel at 85d16e2, seeds 1000-1019, without ->
with: sim 5 frames 0.0273 -> 0.0194 (measured share 0.471 -> 0.443), 10 frames 0.0162 -> 0.0137, simfit
0.0244 -> 0.0198; seeds 2000-2009 sim 5 frames 0.0293 -> 0.0212. Spread 0.05 / 0.2: 0.0163 / 0.0227 at
shares 0.390 / 0.460. Dense depth is the same; its most confident half gains (simfit 5 frames 0.51 -> 0.50)."""
DEFAULT_FRONT_EDGE = True
"""In the dense path, a flat pixel whose focus peak is nearer than every textured anchor around it anchors
the fill at that depth (front_edge_pixels). Seeds 1000-1019 (tools/evaluate_weight_free.py), dense AbsRel
without -> with, 5 and 10 frames: sim 0.0884 -> 0.0819 and 0.0618 -> 0.0548, NYU protocol at 0.8-6 m
0.1277 -> 0.1094 and 0.1165 -> 0.1116. Seeds 2000-2009, 5 frames: sim 0.1136 -> 0.1069, NYU protocol at
0.8-6 m 0.1398 -> 0.1242. The shared Pixel stack: 0.6 % of its pixels move by more than 2 %.
A flat pixel without a peak of its own takes the occlusion rims' near peak around it (rim_candidate_depth;
with occluder_peak on). Without -> with those rims, seeds 1000-1019: sim 0.0819 -> 0.0692 (5 frames) and
0.0548 -> 0.0483 (10), NYU protocol at 0.8-6 m 0.1094 -> 0.1091; seeds 2000-2009, 5 frames: sim
0.1069 -> 0.0922; the Pixel stack: 5.3 % of its pixels move by more than 2 %."""
FRONT_EDGE_REACH_PX = 21
"""Side of the square (pixels of the fill's grid: the dense path's half size) in which front_edge_pixels
looks for textured anchors. 11, 21, 41 px in a first form (against the textured anchors' mean, no
confidence floor): seeds 1000-1019, 5 frames, sim 0.074, 0.066, 0.067 and nyu_far 0.103, 0.102, 0.100."""
FRONT_EDGE_MARGIN = 0.15
"""How much nearer (relative, in diopters) than the nearest textured anchor around a flat pixel's peak
must be. 0.05, 0.15, 0.3 scored within 0.001 of each other on the seeds above (that first form)."""
FRONT_EDGE_MIN_CONFIDENCE = 0.15
"""A flat pixel's own peak confidence needed: an edge in its window, not noise. Without the floor,
noise peaks inside flat areas anchored too: the Pixel stack's blank wall came about 3 % nearer, 43 %
of its pixels moving by more than 2 % (38 % with a floor of 0.05), and the simulated scores gained more
(sim 0.067, nyu_far 0.103) only because their flat objects are near. Floors of 0.1, 0.15, 0.3: sim
0.079, 0.082, 0.085, nyu_far 0.108, 0.110, 0.115; Pixel stack pixels moved by more than 2 %: 4.4 %,
0.6 %, 0.3 % (before the occluder_peak exclusion in FocusMeasureBackend._fill)."""
FRONT_EDGE_MIN_TEXTURED_SHARE = 0.05
"""Share of textured anchors in the square below which a flat pixel has nothing to be in front of."""
EXPECTED_ERROR_SCALE = 0.02
"""Expected relative depth error of a measured pixel (the standard error of defocus_blended_depth's
average, times depth) at which its published confidence halves: a vertex in a wide step of the sweep, or
with a noisy blur fit, ranks below one in a narrow step. It changes confidence only, not depth or the
anchors. Seeds 1000-1009, 5 frames, for 0.01, 0.02, 0.03, 0.1 (without): sim AUSE 0.0226, 0.0169,
0.0178, 0.0213 (0.0222), half 0.55, 0.46, 0.46, 0.50 (0.51); NYU protocol at 0.8-6 m AUSE 0.0331,
0.0349, 0.0363, 0.0376 (0.0377), half 0.74, 0.75, 0.75, 0.76 (0.76). 10 frames: within 0.001.
It applies to every anchor with a blended vertex, also those depth_edge_peaks took out of the measured
set (before: measured ones only): seeds 1000-1019, 5 frames, sim AUSE 0.0114 -> 0.0106, half 0.43 ->
0.41; simfit 0.0192 -> 0.0190."""
BOUND_EXPECTED_ERROR_SCALE = 0.1
"""Expected relative depth error of an end-of-sweep bound (end_defocus_error_d, the standard error of its
relative-blur fit over 2 c s, times depth) at which its published confidence halves, as
EXPECTED_ERROR_SCALE does for measured pixels. Bounds had their peak fit's confidence, which says how
sharp the end frame is, not how well defocus reads the depth beyond it: the most confident half of
5-frame simfit took 14 % of its 35 % from bounds at AbsRel 0.060, all bounds' being 0.063. Seeds
1000-1019, 5 frames, AUSE / half for 0.02, 0.05, 0.1, 0.2 (without): sim 0.0142 / 0.48, 0.0118 / 0.44,
0.0107 / 0.41, 0.0104 / 0.40 (0.0106 / 0.41); simfit 0.0188 / 0.45, 0.0169 / 0.43, 0.0169 / 0.46,
0.0179 / 0.50 (0.0190 / 0.52). At 0.1 the NYU protocol's AUSE 0.1171 -> 0.1195 (5 frames), the others
within 0.0002; seeds 2000-2009, 5 frames, sim 0.0145 -> 0.0135, simfit 0.0162 -> 0.0157. Depth is unchanged."""
DEFAULT_COARSE_BAND_WEIGHT = 0.0
"""Weight of the half-size image's modified Laplacian added to the full-size one's in the dense path.
Where no frame is within about 1 px of focus (the NYU protocol's gather blurs everything else), the
finest texture is gone from every frame and the focus curve is flat; a coarser band keeps a peak.
Dense AbsRel with 1.0 instead of 0 (`tools/evaluate_weight_free.py`, seeds 1000-1003): NYU protocol
5 frames 0.27 -> 0.20, 10 frames 0.18 -> 0.17. With a real lens' disc blur it biases the peak fit
(a textured plane at 2.5 m read 7 % near instead of within 3 %), hence 0 by default; 1.0 in
NYU_PROTOCOL_SETTINGS."""
DEFAULT_CURVE_FLOOR = 0.0
"""Fraction of each focus curve's lowest value subtracted from the curve before the peak fit. Where blur
stops growing with defocus, as under the NYU protocol's 7x7 gather (about 3 px of standard deviation at
most), every frame far from focus keeps the same share of texture: the curve sits on a floor, and the
three frames around the peak, the outer ones on that floor, put the vertex halfway between them. On a
5-frame NYU-protocol sweep over 0.8-6 m (frames at 0.8 and 2.1 m) textured planes at 1.5, 1.7, 1.9 and
2.3 m read 1.37, 1.42, 1.53 and 1.94 m; with half the floor taken off 1.41, 1.54, 1.74 and 2.28 m
(NYU_PROTOCOL_SETTINGS, test/core/depth/test_nyu_protocol_settings.py). Under a real lens' disc blur,
where the floor is noise, it costs: 5-frame simulated stacks, seeds 1000-1019, dense AbsRel 0.0492 ->
0.0566 with 0.5; hence 0 by default."""
DEFAULT_BLUR_SIGMA_PX_PER_DIOPTER = 0.0
"""Standard deviation (pixels of the frames) of the blur a point takes per diopter of defocus, where the lens
is known; 0: not known. With it, end-of-sweep pixels whose last frames look alike take their depth from
the first blurred frame past them (core.models.focus_measure.flat_run_end_depth), and every anchor takes
its depth from blur equalisation (BLUR_EQUALISED_EDGE_SPREAD), which models the blur as a Gaussian of
that standard deviation (cut off at blur_psf_radius_px): a real lens's disc blur it does not model (the
simulated camera's disc, 6.86 px per diopter across, as a Gaussian of 1.71 px per diopter: 5-frame `sim`
stacks, seeds 1000-1019, dense AbsRel 0.2053 against 0.0492 without). A Gaussian's is its
standard deviation; a disc's of diameter D px per diopter, D / 4 (its variance, D^2 / 16, is what the
relative-blur fit measures). The NYU protocol's: CoC / 4 with CoC = A f / pixel pitch per diopter,
(6.25 mm x 50 mm) / 12 um / 4 = 6.51 px (to 1-7 % more at focus distances of 6 m down to 0.8 m)."""
DEFAULT_BLUR_PSF_RADIUS_PX = 0
"""Radius (pixels of the frames) at which the known lens blur is cut off, where a renderer truncates it: 3
for the NYU protocol's 7x7 gather; 0: at 3 standard deviations (an untruncated Gaussian)."""
MAX_BLUR_PSF_RADIUS_PX = 64
BLUR_EQUALISED_EDGE_SPREAD = 2.0
"""With blur_sigma_px_per_diopter set, anchors take the blur-equalised depth (core.models.blur_equalisation)
but where the equalised inverse depths of the 3x3 blocks around them span more than this factor: there the
window crosses an occlusion edge and reads the more textured side's depth (a ring of far depth around near
objects), where the focus peak's own rules (depth_edge_peaks, occluder_peak) read the edge. Seeds 1000-1019,
dense AbsRel, 5 frames nyu_far / nyu: 0.0339 / 0.0921 taking it everywhere, 0.0416 / 0.0931 with a factor 1.5,
0.0402 / 0.0831 with 2; 10 frames 0.0514 / 0.0952 everywhere, 0.0400 / 0.0724 with 2. Keeping it only within
40 % of the anchor's own depth, as first written: 0.0486 / 0.2449 and 0.0402 / 0.1488 (the peak fit reads
the capped blur of the protocol's wide first step wrongly by more than that). With the rounding noise taken
off (blur_equalisation.ROUNDING_VARIANCE), factors 1.5, 2, 3 and everywhere: 5 frames nyu_far 0.0449,
0.0450, 0.0433, 0.0353, nyu 0.0998, 0.0881, 0.0877, 0.0936; 10 frames nyu_far 0.0407, 0.0408, 0.0419,
0.0524, nyu 0.0744, 0.0727, 0.0734, 0.0954."""
BLUR_EQUALISED_EDGE_CONFIDENCE = 0.5
"""Share of their peak's confidence that anchors across an occlusion edge (BLUR_EQUALISED_EDGE_SPREAD, with
contrast: BLUR_EQUALISED_EDGE_MIN_CONTRAST) keep, with their own depth: on NYU-protocol scenes (nyu, 10 frames,
seeds 1000-1006) those peaks were 4-29 % off on average per scene. Those below twice the seed confidence no
longer anchor; the rest weigh half and say so. Seeds 1000-1019, 5 / 10 frames, dense AbsRel
(tools/evaluate_weight_free.py), without the contrast test, with 0.25, 0.5, 0.75 and 1 (frames paired as
neighbours, before blur_equalisation.pair_step): nyu 0.0575 / 0.0723, 0.0506 / 0.0583, 0.0524 / 0.0589,
0.0539 / 0.0598; nyu_far 0.0286 / 0.0411, 0.0326 / 0.0386, 0.0352 / 0.0382, 0.0369 / 0.0394. With pair_step,
0.5 against 1: nyu 0.0506 / 0.0456 against 0.0539 / 0.0473, nyu_far 0.0326 / 0.0317 against 0.0369 / 0.0349,
photo 0.0155 / 0.0131 against 0.0151 / 0.0126 (BLUR_EQUALISED_EDGE_MIN_CONTRAST spares it)."""
BLUR_EQUALISED_EDGE_MIN_CONTRAST = 1.0 / 255.0
"""Luminance standard deviation (of [0, 1]) over BLUR_EQUALISED_EDGE_CONTRAST_BLOCKS 2x2 blocks, in the frame
where it is largest, that an occlusion edge needs for BLUR_EQUALISED_EDGE_CONFIDENCE: two surfaces meet
there, and the nearer is sharp in some frame. Over a blank window (the photo kind's wall) the equalised
depths spread by noise, and the peak is right. Seeds 1000-1019, 5 / 10 frames, with thresholds of 0 (none),
1, 2, 4 and 12 DN: nyu 0.0506 / 0.0456, 0.0507 / 0.0458, 0.0509 / 0.0459, 0.0516 / 0.0460, 0.0540 / 0.0480;
nyu_far 0.0326 / 0.0317, 0.0331 / 0.0322, 0.0337 / 0.0326, 0.0341 / 0.0329, 0.0347 / 0.0334; photo 0.0155 /
0.0131 with none, 0.0151 / 0.0126 with every other (as with no halving). Seeds 2000-2009 at 1 DN against none
and against no halving: nyu 0.0490 / 0.0399, 0.0487 / 0.0391, 0.0518 / 0.0407; nyu_far 0.0444 / 0.0256,
0.0478 / 0.0251, 0.0496 / 0.0260; photo (image_5_1.3.jpg) 0.0175 / 0.0151, 0.0182 / 0.0155, 0.0175 / 0.0151."""
BLUR_EQUALISED_EDGE_CONTRAST_BLOCKS = 5
"""Side of that window in 2x2 blocks (10 px, about blur equalisation's 9 px window)."""
BLUR_EQUALISED_ADDED_MAX_ERROR = 0.2
"""With blur_sigma_px_per_diopter set, a pixel that anchors nothing (no vertex at the seed confidence, no bound)
takes the blur-equalised depth as a vertex of confidence 1 (its published confidence then falls with the
read's expected error, BLUR_EQUALISED_ERROR_SCALE) where that error is below this, and not across an occlusion
edge: weakly textured surfaces give focus peaks below the seed confidence, while their reblurred frames still
disagree measurably away from their depth. Seeds 1000-1019, 5-frame nyu, dense AbsRel for 0.02, 0.05, 0.1,
0.2, 0.5 and no limit: 0.0729, 0.0614, 0.0555, 0.0537, 0.0545, 0.0546, against 0.0762 with none added (these
with each added anchor's confidence 1 / (1 + (error / 0.06)^2) before the same fall again; 1 instead, at 0.2:
0.0535, AUSE 0.0105 against 0.0114). With BLUR_EQUALISED_ADDED_MAX_UNEXPLAINED, 5 / 10 frames
(tools/evaluate_weight_free.py; 10 frames paired as neighbours, before blur_equalisation.pair_step): seeds
1000-1019 nyu 0.0762 / 0.0697 to 0.0539 / 0.0598, nyu_far 0.0378 / 0.0395 to 0.0369 / 0.0394; seeds 2000-2009
nyu 0.0835 / 0.0714 to 0.0518 / 0.0552, nyu_far 0.0498 / 0.0281 to 0.0496 / 0.0285; photo (README) 0.0152 /
0.0172 to 0.0151 / 0.0159."""
BLUR_EQUALISED_ADDED_MAX_UNEXPLAINED = 0.5
"""An added anchor's read must also leave less than this share of the frames' own disagreement
(BlurEqualised.unexplained_share): identical textured frames, which carry no focus cue, have a curved least
disagreement with an expected error of 0.06 (median, test_densify.py's stack) but differ not at all, so every
candidate explains none of it. Seeds 1000-1019, 5 frames, nyu with 0.25, 0.5, 0.9 and no limit: 0.0544,
0.0539, 0.0536, 0.0536. Required of every anchor taken (the added ones at 0.2), it costs: 0.1553, 0.1143 and
0.0702 at 0.1, 0.25 and 0.5 (some true reads leave more than half of the frames' differences)."""
BLUR_EQUALISED_ERROR_SCALE = 0.06
"""Expected relative depth error of a blur-equalised anchor (blur_equalised_depth's) at which its published
confidence halves, as EXPECTED_ERROR_SCALE and BOUND_EXPECTED_ERROR_SCALE do for the peak's and the bound's,
which no longer describe these anchors. It changes confidence only. Seeds 1000-1019, AUSE / half for 0.03,
0.06, 0.1, 0.2 (with the peak's and bound's own errors, as before): 5-frame nyu_far 0.0158 / 0.54, 0.0117 /
0.43, 0.0115 / 0.43, 0.0123 / 0.46 (0.0140 / 0.52); nyu 0.0235 / 0.46, 0.0226 / 0.42, 0.0230 / 0.40,
0.0236 / 0.40 (0.0297 / 0.51); 10 frames at 0.06: nyu_far 0.0069 / 0.32 (0.0118 / 0.40), nyu 0.0133 / 0.21
(0.0411 / 0.52). Measured before the rounding noise was taken off (blur_equalisation.ROUNDING_VARIANCE);
at 0.06 since: 5 frames nyu_far 0.0119 / 0.41, nyu 0.0241 / 0.40; 10 frames 0.0070 / 0.32 and 0.0134 / 0.22;
with 16 candidates per step: 0.0082 / 0.32, 0.0149 / 0.25; 0.0057 / 0.28, 0.0112 / 0.17."""
DISCONTINUITY_WINDOW_PX = 5
"""Window (pixels of the published depth) over which a pixel's depth discontinuity is measured: the largest
over the smallest inverse depth within it, less 1 (its spread; depth_discontinuity_factor). With 7 px the
measured pixels of a 160x120 simulated scene (test_focus_measure.py), many of them on textured outlines, kept
a median confidence of 0.33 (0.64 with 5 px, 0.76 with 3 px; 0.77 without)."""
DISCONTINUITY_NOISE_SPREAD = 0.05
"""Spread within DISCONTINUITY_WINDOW_PX that is taken as the depth's own noise and lowers nothing: over 7 px,
a textured plane between focus steps (test_focus_measure.py, 10 frames, 1 DN noise) spreads by 0.8, 1.7, 2.5
and 4.0 % (median) at 0.4, 0.75, 1.3 and 2.5 m; without it its median confidence fell from 0.84 to 0.47 at
2.5 m."""
DISCONTINUITY_SCALE = 0.05
"""Spread beyond DISCONTINUITY_NOISE_SPREAD at which published confidence halves (a 10 % spread halves it, 20 %
leaves a tenth). Pixels next to a depth edge are mixed: the half-size fill and the upsampling put the edge
within a pixel or two of the true one, and a focus window there sees both surfaces. In 5-frame `sim` scenes
(seeds 1000-1019) the pixels within 1 px of a depth edge had an AbsRel of 0.34 at a mean confidence of 0.33,
against 0.031 and 0.46 beyond 8 px. It changes confidence only. Seeds 1000-1019, AUSE / half before (none)
and with windows of 3, 5 and 7 px: 5-frame sim 0.0107 / 0.42, 0.0086 / 0.39, 0.0077 / 0.37, 0.0072 / 0.36;
photo 0.0042 / 0.54, 0.0041 / 0.54, 0.0038 / 0.53, 0.0037 / 0.51; nyu 0.0096 / 0.32, 0.0080 / 0.31, 0.0077 /
0.31, 0.0077 / 0.31; 10-frame photo 0.0034 / 0.51, 0.0033 / 0.51, 0.0031 / 0.50, 0.0029 / 0.48. With 7 px and
no noise spread: sim 0.0077 / 0.38, photo 0.0033 / 0.48 (the depth's own noise ranks its error there), nyu
0.0073 / 0.30. A scale of 0.03 moved none of these by more than 0.0002 / 0.01. Measured pixels lowered too:
left at their own confidence, 5-frame sim scored 0.0083 / 0.39. At 320x240 (seeds 1000-1019, 5 frames) sim
AUSE 0.0193 -> 0.0137, nyu 0.0183 -> 0.0126; SimulatedCapture seeds 0-19 at 320x240 0.0127 -> 0.0108 (18
of 20 scenes better), at 160x120 0.0210 either way (half 0.36 -> 0.40). 2.6-4.1 ms a 480x640 depth map
(one thread)."""
NYU_PROTOCOL_SETTINGS = MappingProxyType({"curve_exponent": -2.0, "coarse_band_weight": 1.0,
                                          "seed_min_confidence": 0.25, "curve_floor": 0.5,
                                          "blur_sigma_px_per_diopter": 6.51, "blur_psf_radius_px": 3})
"""FocusMeasureBackend options for focal stacks synthesised by the paper's NYU protocol
(core/sim/nyu_protocol.py: Gaussian blur capped by a 7x7 gather, pixels within about 1 px of focus left
untouched, no noise), as tools/evaluate_weight_free.py scores them. Dense AbsRel, seeds 1000-1019,
480x640, 5 / 10 frames, scenes at 0.8-6 m: 0.0412 / 0.0389 (seeds 2000-2009: 0.0519 / 0.0285); scenes
at 0.3-5 m: 0.0790 / 0.0700 (0.0822 / 0.0680). With 8 blur-equalisation candidates per step instead of 16:
0.0450 / 0.0408 and 0.0881 / 0.0727. Before blur equalisation (the lens's blur used only by
flat_run_end_depth) 0.0778 / 0.0612 and 0.2882 / 0.1871; without blur_sigma_px_per_diopter 0.0830 /
0.0594 and 0.2907 / 0.1897; with the settings before those (curve_exponent -1.5, coarse_band_weight 1.0)
0.0994 / 0.0579 and 0.3693 / 0.2448. Noise-free
frames let weaker peaks anchor the fill (seed_min_confidence 0.25, against 0.5 for a real camera, where
0.3 let noise peaks on the Pixel stack's blank wall anchor it)."""
CPU_THREADS = 1
"""Torch threads for this backend's CPU work. Its operations are short and memory-bound: on this
project's shared 2-core machine, two threads waited on each other (an elementwise product over a
5x480x640 stack took 48 ms with 2 threads under load, 0.85 ms with 1)."""


class FocusMeasureBackend(DepthBackend):
    """Depth from focus without learned weights.

    window_px, curve_exponent, noise_floor, second_peak_tolerance: those of
      FocusMeasureDFF.
    densify: fill the pixels without a usable focus peak edge-aware from the
      measured ones (core.depth.densify); False gives measured-only depth,
      NaN wherever the focus curve has no interior peak.
    seed_min_confidence, smoothness, guide_sigma, decay_px: those of
      DensifyParams (used when densify is on).
    end_peak_weight: with densify on, pixels sharpest in the first or last
      frame anchor the fill at that end of the sweep (PeakFit.end_depth_m),
      their confidence scaled by this (0: they are filled like holes).
    coarse_band_weight: with densify on, the focus measure adds the
      half-size image's band with this weight (DEFAULT_COARSE_BAND_WEIGHT).
    end_defocus: with densify on, those end-of-sweep anchors take their depth
      from defocus between the end frame and its neighbour (DEFAULT_END_DEFOCUS).
    occluder_peak: with densify on, flat pixels with two focus peaks take the
      nearer, their occlusion edge's (DEFAULT_OCCLUDER_PEAK).
    defocus_blend: with densify on, measured pixels' depth is their focus peak
      averaged with depth from relative blur (DEFAULT_DEFOCUS_BLEND).
    front_edge: with densify on, flat pixels whose focus peak is nearer than
      every textured anchor around them anchor the fill (DEFAULT_FRONT_EDGE);
      with occluder_peak also on, a flat pixel without a peak of its own
      takes the near peak of the occlusion rims around it.
    blur_rate_stacks: the relative-blur rate (end_defocus, defocus_blend) is
      the mean of the calibrations of up to this many recent stacks of the same
      camera and focus distances (BlurRatePool); 1: each stack's own.
    curve_floor: this fraction of each focus curve's lowest value is taken
      off the curve before the peak fit (DEFAULT_CURVE_FLOOR).
    blur_sigma_px_per_diopter: the lens's blur per diopter where it is known,
      for end-of-sweep pixels whose last frames look alike (with end_defocus;
      DEFAULT_BLUR_SIGMA_PX_PER_DIOPTER), and for every anchor by blur
      equalisation (BLUR_EQUALISED_EDGE_SPREAD), which also anchors pixels
      without a peak where it is sure (BLUR_EQUALISED_ADDED_MAX_ERROR); 0: not known.
    blur_psf_radius_px: where that blur is cut off (DEFAULT_BLUR_PSF_RADIUS_PX).
    min_confidence: depth below this confidence is set to NaN (0 keeps every
      pixel; the confidence map is returned either way).

    NYU_PROTOCOL_SETTINGS holds the options for NYU-protocol stacks.
    """

    name = "focus_measure"

    def __init__(
        self,
        device: str = "auto",
        window_px: int = DEFAULT_WINDOW_PX,
        curve_exponent: float = DEFAULT_CURVE_EXPONENT,
        noise_floor: float = 0.01,
        second_peak_tolerance: float = 0.2,
        min_confidence: float = 0.0,
        densify: bool = DEFAULT_DENSIFY,
        seed_min_confidence: float = DEFAULT_SEED_MIN_CONFIDENCE,
        smoothness: float = DEFAULT_SMOOTHNESS,
        guide_sigma: float = DEFAULT_GUIDE_SIGMA,
        decay_px: float = DEFAULT_DECAY_PX,
        end_peak_weight: float = DEFAULT_END_PEAK_WEIGHT,
        coarse_band_weight: float = DEFAULT_COARSE_BAND_WEIGHT,
        end_defocus: bool = DEFAULT_END_DEFOCUS,
        occluder_peak: bool = DEFAULT_OCCLUDER_PEAK,
        defocus_blend: bool = DEFAULT_DEFOCUS_BLEND,
        front_edge: bool = DEFAULT_FRONT_EDGE,
        blur_rate_stacks: int = DEFAULT_BLUR_RATE_STACKS,
        curve_floor: float = DEFAULT_CURVE_FLOOR,
        blur_sigma_px_per_diopter: float = DEFAULT_BLUR_SIGMA_PX_PER_DIOPTER,
        blur_psf_radius_px: int = DEFAULT_BLUR_PSF_RADIUS_PX,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.device = resolve_device(device)
        self.dff = FocusMeasureDFF(window_px, curve_exponent, noise_floor, second_peak_tolerance)
        self.min_confidence = min_confidence
        self.densify = bool(densify)
        if not 0.0 <= end_peak_weight <= 1.0:
            raise ValueError(f"end_peak_weight must be in [0, 1], got {end_peak_weight}")
        self.end_peak_weight = end_peak_weight
        if not coarse_band_weight >= 0:
            raise ValueError(f"coarse_band_weight must be >= 0, got {coarse_band_weight}")
        self.coarse_band_weight = coarse_band_weight
        if not 0.0 <= curve_floor < 1.0:
            raise ValueError(f"curve_floor must be in [0, 1), got {curve_floor}")
        self.curve_floor = curve_floor
        if not 0.0 <= blur_sigma_px_per_diopter < math.inf:
            raise ValueError(f"blur_sigma_px_per_diopter must be >= 0 and finite, got {blur_sigma_px_per_diopter}")
        self.blur_sigma_px_per_diopter = blur_sigma_px_per_diopter
        if isinstance(blur_psf_radius_px, bool) or int(blur_psf_radius_px) != blur_psf_radius_px \
                or not 0 <= blur_psf_radius_px <= MAX_BLUR_PSF_RADIUS_PX:
            raise ValueError(f"blur_psf_radius_px must be an integer in [0, {MAX_BLUR_PSF_RADIUS_PX}], got {blur_psf_radius_px}")
        self.blur_psf_radius_px = int(blur_psf_radius_px)
        self.end_defocus = bool(end_defocus)
        self.occluder_peak = bool(occluder_peak)
        self.defocus_blend = bool(defocus_blend)
        self.front_edge = bool(front_edge)
        blur_rate_pool = BlurRatePool(blur_rate_stacks)  # raises for a bad size
        self.blur_rate_pool = blur_rate_pool if blur_rate_pool.max_stacks > 1 else None
        self.densify_params = DensifyParams(seed_min_confidence, smoothness, guide_sigma, decay_px).validate()

    def _estimate(self, stack: FocalStack) -> DepthResult:
        threads = torch.get_num_threads()
        limit = self.device.type == "cpu" and threads > CPU_THREADS
        # inference_mode: no autograd bookkeeping per operation, which on the CPU is much of the cost of the
        # many small ones (the coarsest solve's 30 iterations: 5.2 against 6.2 ms).
        with _torch_threads(CPU_THREADS) if limit else contextlib.nullcontext(), torch.inference_mode():
            return self._estimate_on_device(stack)

    def _estimate_on_device(self, stack: FocalStack) -> DepthResult:
        frames = torch.from_numpy(np.ascontiguousarray(stack.frames)).to(self.device)  # (N, H, W, 3) uint8
        distances_m = torch.as_tensor(np.asarray(stack.focus_distances_m, dtype=np.float64), device=self.device)
        diopters = (1.0 / distances_m).float()
        valid = None if stack.valid_mask is None else torch.from_numpy(stack.valid_mask).to(self.device)
        if self.densify and min(stack.height, stack.width) >= 2 * MIN_DENSE_SIDE_PX:
            pool = self.blur_rate_pool
            rates_for = None if pool is None else (lambda used_d: pool.for_key(_camera_and_sweep(stack, used_d)))
            return self._dense(frames, diopters, valid, rates_for)
        timings_s: dict[str, float] = {}
        start_s = time.perf_counter()
        focus = self.dff.focus_measure(_luminance_unit(frames))
        timings_s["focus_measure"] = time.perf_counter() - start_s
        start_s = time.perf_counter()
        fit = self.dff.peak_fit(self._off_floor(focus), diopters, flat_end=self.densify)  # flat_end: see peak_fit
        depth_m = fit.depth_m
        confidence = torch.where(torch.isnan(depth_m), 0.0, fit.confidence)
        timings_s["peak_fit"] = time.perf_counter() - start_s
        if self.densify:  # too small to work at half size
            start_s = time.perf_counter()
            guide = all_in_focus_guide(frames, guide_frame_index(
                focus, fit.peak_index, confidence, self.densify_params.seed_min_confidence))
            depth_m, confidence, measured, diagnostics = self._fill(
                guide, fit, depth_m, confidence, valid, self.dff.window_px, self.densify_params)
            confidence = confidence * depth_discontinuity_factor(depth_m)
            timings_s["densify"] = time.perf_counter() - start_s
        else:
            measured, diagnostics = torch.isfinite(depth_m), {}
        return self._result(depth_m, confidence, measured, timings_s, diagnostics)

    def _dense(self, frames: torch.Tensor, diopters: torch.Tensor, valid: torch.Tensor | None,
               rates_for: Callable[[torch.Tensor], BlurRates] | None = None) -> DepthResult:
        """Focus measure, peak fit and fill at half size (2x2 blocks), then joint-upsampled to the frames' size.

        The focus measure is a window average (9 px by default), so a depth per
        2x2 block loses little; it makes the peak fit and the solve four times
        cheaper. The focus measure may add a coarser band (coarse_band_weight).
        The final upsampling follows the full-size all-in-focus image.
        `rates_for`: the camera's rates for the focus distances used (diopters), which this stack's
        calibration joins (RelativeBlur.calibrate).
        A sweep much finer than the lens's depth of field is read from about every other frame (thinned_sweep),
        unless the lens's blur is known.
        """
        timings_s: dict[str, float] = {}
        start_s = time.perf_counter()
        half_window_px = (self.dff.window_px // 2) | 1
        luma, fine = _half_size_planes(frames)
        # The frames' luminance as 2x2 block means: the coarse band's and blur equalisation's contrast test's.
        blocks = None
        if self.coarse_band_weight > 0 or self.blur_sigma_px_per_diopter > 0:
            blocks = sum_pool_2x2(luma) / 4.0
        if self.coarse_band_weight > 0:
            fine = fine + self.coarse_band_weight * modified_laplacian(blocks)
        focus = box_mean(fine, half_window_px)
        frames_given = focus.shape[0]
        # With the blur known, blur equalisation reads a flat top as it is, from every frame.
        thin = self.blur_sigma_px_per_diopter == 0
        while thin and (keep := thinned_sweep(focus, self.dff.noise_floor)) is not None:
            frames, luma, fine, focus, diopters = (planes[keep] for planes in (frames, luma, fine, focus, diopters))
        blur_rates = None if rates_for is None else rates_for(diopters)
        timings_s["focus_measure"] = time.perf_counter() - start_s

        start_s = time.perf_counter()
        fit_focus, occluder, rim_near_m = focus, None, None
        if self.occluder_peak:
            flat = own_texture_share(fine.amax(0), half_window_px) < OCCLUDER_FLAT_SHARE
            # Two-peaked flat pixels fit the cut curve (occluder_peak); front_edge takes the near peak of
            # the two-peaked textured ones, an occlusion rim's.
            cut, two_peaks = occluder_peak_curves(focus)
            occluder = two_peaks & flat
            fit_focus = torch.where(occluder, cut, focus)
            if self.front_edge:
                rim = two_peaked(focus, cut, rim_min_rise(focus.shape[0])) & ~flat
                rim_near_m = occlusion_rim_depth(self.dff, cut, rim, diopters)
        fit_focus = self._off_floor(fit_focus)
        fit = self.dff.peak_fit(fit_focus, diopters, flat_end=True)
        blur = None
        if self.end_defocus or self.defocus_blend:
            pairs = VertexPairs.of(fit, diopters)
            blur = RelativeBlur.calibrate(fit, pairs, _antialiased_half_size(luma),
                                          self.densify_params.seed_min_confidence, pool=blur_rates)
        relative_error = bound_error = None
        if blur is not None and self.end_defocus:
            fit = replace(fit, end_depth_m=end_defocus_depth(fit, blur, diopters))
            if self.blur_sigma_px_per_diopter > 0:
                half_size_sigma = self.blur_sigma_px_per_diopter / 2  # the blur planes are at half size
                run_m, run = flat_run_end_depth(fit, fit_focus, blur, diopters, half_size_sigma)
                fit = replace(fit, end_depth_m=torch.where(run, run_m, fit.end_depth_m))
            bound_error = end_defocus_error_d(fit, blur, diopters) * fit.end_depth_m
        if blur is not None and self.defocus_blend:
            blended_m, error_d = defocus_blended_depth(fit, pairs, blur, diopters)
            fit = replace(fit, depth_m=blended_m)
            relative_error = error_d * blended_m  # a depth error of dD diopters is dD * z of z metres
        equalised_error = None
        if self.blur_sigma_px_per_diopter > 0:
            fit, equalised_error = self._blur_equalised(fit, luma, blocks, diopters)
            # The peak's and the end bound's own expected errors no longer describe the anchors taken.
            taken = torch.isfinite(equalised_error)
            relative_error = None if relative_error is None else relative_error.masked_fill(taken, torch.nan)
            bound_error = None if bound_error is None else bound_error.masked_fill(taken, torch.nan)
        confidence = torch.where(torch.isnan(fit.depth_m), 0.0, fit.confidence)
        timings_s["peak_fit"] = time.perf_counter() - start_s

        start_s = time.perf_counter()
        height, width = frames.shape[1:3]
        rows, cols = focus.shape[-2:]
        index = guide_frame_index(focus, fit.peak_index, confidence, self.densify_params.seed_min_confidence, REGION_PX // 2)
        # Guides: colour at half size (one pixel of each 2x2 block), luminance at full size, each
        # from the frame chosen for its block.
        half_guide = all_in_focus_guide(frames[:, 0:2 * rows:2, 0:2 * cols:2], index)
        full_luma = _gather_blocks(luma, index, height, width)
        half_valid = None if valid is None else sum_pool_2x2(valid[None].float())[0] > 3.5
        # Solved over the whole grid (anchors only inside the registered area), so that upsampling
        # next to the area's border blends no missing values; the border is applied at full size.
        if half_valid is not None:
            confidence = confidence * half_valid
        bound_area = focus_window_inside(half_valid, rows, cols, half_window_px, confidence.device)
        # At half size each anchor stands for 4 pixels and lengths halve: the same solve as at full size.
        half_params = replace(self.densify_params, smoothness=self.densify_params.smoothness / 4,
                              decay_px=self.densify_params.decay_px / 2)
        depth_m, confidence, measured, diagnostics = self._fill(
            half_guide, fit, fit.depth_m, confidence, None, half_window_px, half_params, occluder, relative_error,
            rim_near_m, bound_area, bound_error, equalised_error)
        depth_m = edge_snapped(depth_m, half_guide)
        if half_valid is not None:
            diagnostics["measured_fraction"] = float((measured & half_valid).sum()) / max(int(half_valid.sum()), 1)
        if focus.shape[0] < frames_given:
            diagnostics["frames_used"] = float(focus.shape[0])
        if blur is not None:
            diagnostics["blur_rate_px2"] = blur.rate_px2
            diagnostics["blur_rate_stacks"] = float(blur_rates.stacks if blur_rates is not None else 1)
        filled = joint_upsample(torch.nan_to_num(1.0 / depth_m, nan=0.0)[None], luminance(half_guide), full_luma,
                                self.densify_params.guide_sigma * UPSAMPLE_SIGMA_FRACTION)
        depth_m = filled[0].clamp_(min=1e-6).reciprocal_()
        # Confidence varies smoothly but for measured islands: bilinear is enough (and a third of the cost).
        confidence = F.interpolate(confidence[None, None], scale_factor=2, mode="bilinear", align_corners=False)[0]
        confidence = _replicate_to(confidence, height, width)[0].clamp(0.0, 1.0)
        confidence = confidence * depth_discontinuity_factor(depth_m)
        measured = _blocks_to_pixels(measured, height, width)
        if "note" in diagnostics:  # no anchor: no depth
            depth_m = torch.full_like(depth_m, torch.nan)
        if valid is not None:
            depth_m = depth_m.masked_fill(~valid, torch.nan)
        timings_s["densify"] = time.perf_counter() - start_s
        return self._result(depth_m, confidence, measured, timings_s, diagnostics)

    def _blur_equalised(self, fit: PeakFit, luma: torch.Tensor, blocks: torch.Tensor,
                        diopters: torch.Tensor) -> tuple[PeakFit, torch.Tensor]:
        """`fit` (half size) with the blur-equalised depth of the full-size `luma` taken, but across occlusion
        edges (BLUR_EQUALISED_EDGE_SPREAD, where anchors keep their own depth with BLUR_EQUALISED_EDGE_CONFIDENCE
        of their confidence) and where it read nothing (an infinite expected error): by its vertices and
        bounds, and as a vertex of confidence 1 by pixels that anchor nothing where the read is sure
        (BLUR_EQUALISED_ADDED_MAX_ERROR); and the expected relative error of the depth taken (NaN where none
        was). `blocks`: `luma` as 2x2 block means, for the contrast an occlusion edge needs."""
        read = blur_equalised_depth(luma, diopters, self.blur_sigma_px_per_diopter, self.blur_psf_radius_px)
        rows, cols = fit.depth_m.shape
        equalised_m, error, unexplained = (plane[:rows, :cols] for plane in read)
        inverse = equalised_m.reciprocal()[None]
        across_edge = box_max(inverse, 3)[0] > BLUR_EQUALISED_EDGE_SPREAD * -box_max(-inverse, 3)[0]
        usable = ~across_edge & torch.isfinite(error)
        vertex = torch.isfinite(fit.depth_m)
        bound = torch.isfinite(fit.end_depth_m)
        taken = (vertex | bound) & usable
        peak_anchor = (vertex & (fit.confidence >= self.densify_params.seed_min_confidence)) | bound
        added = (~peak_anchor & usable & (error < BLUR_EQUALISED_ADDED_MAX_ERROR)
                 & (unexplained < BLUR_EQUALISED_ADDED_MAX_UNEXPLAINED))
        # Anchors across an occlusion edge keep their own depth, and count less (BLUR_EQUALISED_EDGE_CONFIDENCE);
        # the edge shows as contrast in some frame, and over a blank window the spread is the read's noise.
        mean = box_mean(blocks, BLUR_EQUALISED_EDGE_CONTRAST_BLOCKS)
        spread = box_mean(blocks * blocks, BLUR_EQUALISED_EDGE_CONTRAST_BLOCKS) - mean * mean
        occlusion = across_edge & (spread.clamp_(min=0).sqrt_().amax(0) > BLUR_EQUALISED_EDGE_MIN_CONTRAST)
        confidence = torch.where(occlusion, BLUR_EQUALISED_EDGE_CONFIDENCE * fit.confidence, fit.confidence)
        refined = replace(fit, depth_m=torch.where((vertex & taken) | added, equalised_m, fit.depth_m),
                          end_depth_m=torch.where(bound & taken, equalised_m, fit.end_depth_m),
                          confidence=confidence.masked_fill(added, 1.0))
        return refined, torch.where(taken | added, error, torch.nan)

    def _off_floor(self, focus: torch.Tensor) -> torch.Tensor:
        """(N, H, W) focus curves less curve_floor times each one's lowest value (DEFAULT_CURVE_FLOOR)."""
        if self.curve_floor == 0:
            return focus
        return focus - self.curve_floor * focus.amin(0)

    def _fill(self, guide, fit, depth_m, confidence, valid, window_px: int, params: DensifyParams, occluder=None,
              relative_error=None, rim_near_m=None, bound_area=None, bound_error=None, equalised_error=None):
        """Densify the peak fit under `guide` (3, h, w) of the same size; returns depth, confidence, measured, diagnostics.

        The anchors are chosen by `_anchors` (`occluder`, `rim_near_m`, `bound_area`: see there).
        `relative_error` (optional, (h, w)): anchors' expected relative depth error (defocus_blended_depth's,
        NaN but at blended vertices); their published confidence falls with it (EXPECTED_ERROR_SCALE).
        `bound_error` (optional, (h, w)): the same for end-of-sweep bounds (end_defocus_error_d's), with
        BOUND_EXPECTED_ERROR_SCALE.
        `equalised_error` (optional, (h, w)): the same for anchors that took the blur-equalised depth, with
        BLUR_EQUALISED_ERROR_SCALE.
        """
        anchor_depth_m, anchor_confidence, indirect = self._anchors(
            guide, fit, depth_m, confidence, window_px, params, occluder, rim_near_m, bound_area)
        dense = densify(anchor_depth_m, anchor_confidence, guide, valid, params)
        # Sharpest at an end of the sweep (a bound) or read from a nearby occlusion edge: anchors, but
        # not measurements of the pixel itself.
        indirect_anchor = dense.measured & indirect
        measured = dense.measured & ~indirect
        filled_confidence = torch.where(indirect_anchor, INDIRECT_ANCHOR_CONFIDENCE_SCALE * dense.confidence, dense.confidence)
        if relative_error is not None:
            filled_confidence = _lowered_by_expected_error(filled_confidence, relative_error, EXPECTED_ERROR_SCALE,
                                                           dense.measured)
        if bound_error is not None:
            filled_confidence = _lowered_by_expected_error(filled_confidence, bound_error, BOUND_EXPECTED_ERROR_SCALE,
                                                           indirect_anchor)
        if equalised_error is not None:
            filled_confidence = _lowered_by_expected_error(filled_confidence, equalised_error,
                                                           BLUR_EQUALISED_ERROR_SCALE, dense.measured)
        inside = dense.measured.numel() if valid is None else int(valid.sum())
        diagnostics: dict[str, float | str] = {"measured_fraction": float(measured.sum()) / max(inside, 1)}
        if not bool(dense.measured.any()):
            diagnostics["note"] = (
                f"no pixel has a focus peak with confidence >= {self.densify_params.seed_min_confidence}: "
                "no focus cue in this stack, so no depth"
            )
        return dense.depth_m, filled_confidence, measured, diagnostics

    def _anchors(self, guide, fit, depth_m, confidence, window_px: int, params: DensifyParams, occluder=None,
                 rim_near_m=None, bound_area=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What anchors the fill, (h, w) each: depth (m), confidence, and which anchors are indirect.

        Measured peaks (`depth_m`, `confidence`) and end-of-sweep bounds (fit.end_depth_m, weighted by
        end_peak_weight), each weighted by the pixel's own texture (own_texture_factor). Indirect, read
        from an occlusion edge rather than the pixel itself, and counted in full whatever their texture:
        `occluder` (bool, optional), flat pixels that read their occlusion edge's depth
        (occluder_peak_curves), and with front_edge on the front_edge_pixels, at least at the seed
        confidence. `rim_near_m` (optional): occlusion_rim_depth's; with front_edge on, a flat pixel
        without a peak of its own takes the rims' near depth around it as its candidate (rim_candidate_depth).
        Bounds are indirect too. `bound_area` (bool, optional): where bounds may anchor (focus_window_inside).
        """
        at_end = torch.isnan(depth_m) & torch.isfinite(fit.end_depth_m)
        if bound_area is not None:
            at_end &= bound_area
        anchor_depth_m = torch.where(at_end, fit.end_depth_m, depth_m)
        anchor_confidence = torch.where(at_end, self.end_peak_weight * fit.confidence, confidence)
        own_texture = own_texture_factor(guide, window_px)
        if self.front_edge:
            candidate_m, candidate_confidence = depth_m, confidence
            if rim_near_m is not None:
                from_rim_m = rim_candidate_depth(rim_near_m)
                own_peak = (confidence >= FRONT_EDGE_MIN_CONFIDENCE) & torch.isfinite(depth_m)
                use_rim = ~own_peak & torch.isfinite(from_rim_m)
                candidate_m = torch.where(use_rim, from_rim_m, depth_m)
                candidate_confidence = torch.where(use_rim, FRONT_EDGE_MIN_CONFIDENCE, confidence)
            front = front_edge_pixels(candidate_m, candidate_confidence, anchor_depth_m, anchor_confidence,
                                      own_texture < OCCLUDER_FLAT_SHARE, params.seed_min_confidence, occluder)
            if occluder is not None:
                # Within a window of an occluder_peak pixel its cut curve reads the edge better than the
                # whole curve, which the farther texture biases (the disc of test_occluder_peak: 2.4 % of
                # its depth with this, 5.5 % without; seeds 1000-1019, 5 frames: sim 0.0819 against
                # 0.0821, nyu_far 0.1094 against 0.1103).
                front &= box_max(occluder.to(confidence.dtype)[None], window_px)[0] == 0
            anchor_depth_m = torch.where(front, candidate_m, anchor_depth_m)
            anchor_confidence = torch.where(front, candidate_confidence.clamp(min=params.seed_min_confidence),
                                            anchor_confidence)
            occluder = front if occluder is None else occluder | front
        if occluder is not None:
            own_texture = torch.where(occluder, 1.0, own_texture)
        indirect = at_end if occluder is None else at_end | occluder
        direct_peak = ~indirect & (confidence >= params.seed_min_confidence) & torch.isfinite(anchor_depth_m)
        indirect = indirect | depth_edge_peaks(anchor_depth_m, direct_peak)
        return anchor_depth_m, anchor_confidence * own_texture, indirect

    def _result(self, depth_m, confidence, measured, timings_s, diagnostics) -> DepthResult:
        if self.min_confidence > 0:
            depth_m = torch.where(confidence >= self.min_confidence, depth_m, torch.nan)
        confidence = torch.where(torch.isnan(depth_m), 0.0, confidence)
        depth_np = depth_m.cpu().numpy().astype(np.float32, copy=False)
        confidence_np = confidence.cpu().numpy().astype(np.float32, copy=False)
        measured_np = (measured & torch.isfinite(depth_m)).cpu().numpy()
        return DepthResult(depth_np, confidence_np, timings_s, diagnostics, measured_np)


def _lowered_by_expected_error(confidence: torch.Tensor, relative_error: torch.Tensor, scale: float,
                               where: torch.Tensor) -> torch.Tensor:
    """`confidence` divided by 1 + (relative_error / scale)^2 at `where`, unchanged elsewhere and where the
    error is NaN (no estimate)."""
    expected = torch.nan_to_num(relative_error, nan=0.0) / scale
    return torch.where(where, confidence / (1.0 + expected * expected), confidence)


def depth_discontinuity_factor(depth_m: torch.Tensor, window_px: int = DISCONTINUITY_WINDOW_PX,
                                noise_spread: float = DISCONTINUITY_NOISE_SPREAD,
                                scale: float = DISCONTINUITY_SCALE) -> torch.Tensor:
    """(H, W) factor in (0, 1] for the confidence of (H, W) `depth_m`: 1 / (1 + (excess / scale)^2), excess the
    spread of inverse depth within `window_px` (largest / smallest - 1; NaN depth left out) beyond `noise_spread`.
    Mixed pixels at depth edges ("flying pixels" in a point cloud) rank last."""
    inverse = depth_m.reciprocal()
    largest, smallest = inverse_depth_extremes(inverse, window_px)
    excess = torch.where(torch.isfinite(inverse), largest / smallest - (1.0 + noise_spread), 0.0)
    excess = excess.clamp_(min=0.0) / scale
    return (1.0 + excess * excess).reciprocal_()


def focus_window_inside(valid: torch.Tensor | None, rows: int, cols: int, window_px: int,
                        device: torch.device) -> torch.Tensor:
    """(rows, cols) bool: pixels whose focus window, widened by the modified Laplacian's 1 px, lies inside the
    image and inside `valid` (bool (rows, cols), optional: the registered area), i.e. at least
    window_px // 2 + 1 pixels from the image's border and from any pixel outside `valid`. End-of-sweep
    bounds anchor the fill only there (FocusMeasureBackend._anchors).

    A bound says only that the first or the last frame was sharpest, which noise decides where the curve
    is flat; next to the image's border the Laplacian's second difference reaches past it, where the
    replicated edge makes it a first difference, which blur does not take away (a wall's shading), and
    next to the registered area's border the window takes in frames warped from outside the image.
    Bounds outside `valid` anchored too before (their confidence is the peak fit's, not the masked one).
    On the shared Pixel stack three blocks in its top row were first-frame bounds (0.5 m) on the blank
    wall; once texture cut the wall off from the backpack's outline (densify.TEXTURE_SIGMA) they pulled
    its right half to 0.62-0.70 m, in front of the backpack (0.72 m); without them it is 0.87-0.88 m.
    Seeds 1000-1019, dense AbsRel without -> with: 5-frame sim 0.0498 -> 0.0497, simfit 0.0645 -> 0.0643,
    NYU protocol 0.3720 -> 0.3730; the others within 0.0003. Applied to every anchor, not only bounds,
    it cost seeds 2000-2009 `simfit` 0.0679 -> 0.0709: the simulated scenes' borders are true texture.
    """
    margin = window_px // 2 + 1
    inside = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    inside[margin:rows - margin, margin:cols - margin] = True
    if valid is not None:
        outside = (~valid).to(torch.float32)[None]
        inside &= box_max(outside, 2 * margin + 1)[0] == 0
    return inside


def depth_edge_peaks(depth_m: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """(h, w) bool: `peak` pixels whose 3x3 `peak` neighbours span more than DEPTH_EDGE_SPREAD of depth."""
    planes = torch.stack((torch.where(peak, depth_m, 0.0), torch.where(peak, -depth_m, -torch.inf)))
    nearest_m, farthest_m = -box_max(planes[1:], 3)[0], box_max(planes[:1], 3)[0]
    return peak & (farthest_m > nearest_m * (1.0 + DEPTH_EDGE_SPREAD))


MIN_DENSE_SIDE_PX = 24
"""Below twice this short side the dense path works at full size."""
FOCUS_KEY_DIOPTER_DECIMALS = 2
"""Focus distances that agree to 0.01 D count as the same sweep for BlurRatePool (a driver's reported
positions jitter)."""


FINE_SWEEP_NEIGHBOUR_RATIO = 0.95
"""A sweep is finer than the lens's depth of field where, at the median pixel with an interior peak above the
noise floor (a top flat to an end frame left out: peak_at_flat_end), the better neighbour of the sharpest
frame keeps more than this share of its focus measure: the curve's top is flat over several frames, the
three-frame vertex wanders over it, fewer pixels pass the confidence (its rise over the curve's mean falls)
and the blur-rate calibration fails. Such a sweep is read from about every other frame. Measured
(tools/evaluate_weight_free.py, seeds 1000-1019, 10 frames): `photofit` 0.945-0.968 (0.766 in one scene),
`simfit` 0.59-0.942 and `sim` below, where nothing changes. Not with the lens's blur known
(blur_sigma_px_per_diopter): 10-frame nyu_far / nyu 0.0395 / 0.0697 read 0.0399 / 0.0707 thinned. The margin
is thin: `simfit` seed 1018 (0.942, 1.4 px more blur per step) read 0.0795 where it was thinned against 0.047.
`photofit` dense AbsRel 0.1039 to 0.0730 (5 frames: 0.0717)."""
FINE_SWEEP_MIN_FRAMES = 9
"""Only stacks of at least this many frames are thinned, so that at least 5 are read."""
FINE_SWEEP_MIN_PIXELS = 100
"""Peaked pixels the rule needs; with fewer the stack is read as it is."""


def thinned_sweep(focus: torch.Tensor, noise_floor: float) -> torch.Tensor | None:
    """Indices of (N + 1) // 2 frames evenly spread over the sweep, both ends included (every other frame of an
    odd N; 0, 2, 4, 7, 9 of 10), of (N, H, W) focus curves whose sweep is finer than the lens's depth of field
    (FINE_SWEEP_NEIGHBOUR_RATIO); None where it is not, or N < FINE_SWEEP_MIN_FRAMES."""
    count = focus.shape[0]
    if count < FINE_SWEEP_MIN_FRAMES:
        return None
    peak_value, peak = focus.max(0)
    # A top flat from the peak to an end frame is the flat-end rule's (an end-of-sweep bound), as where the NYU
    # protocol leaves the last frames of a far plane exactly alike: left out.
    relative = list((focus / peak_value.clamp(min=1e-12)).unbind(0))
    ends_peak = peak_at_flat_end(relative, peak.to(focus.dtype)).long()
    peaked = (ends_peak > 0) & (ends_peak < count - 1) & (peak_value > noise_floor)
    if int(peaked.sum()) < FINE_SWEEP_MIN_PIXELS:
        return None
    inner = peak.clamp(1, count - 2)
    neighbour = torch.maximum(focus.gather(0, (inner - 1)[None])[0], focus.gather(0, (inner + 1)[None])[0])
    if not float((neighbour / peak_value.clamp(min=1e-12))[peaked].median()) > FINE_SWEEP_NEIGHBOUR_RATIO:
        return None
    keep = np.unique(np.rint(np.linspace(0, count - 1, (count + 1) // 2)).astype(np.int64))
    return torch.from_numpy(keep).to(focus.device)


def _camera_and_sweep(stack: FocalStack, used_d: torch.Tensor) -> tuple:
    """BlurRatePool's key: the measured blur rate depends on the lens, the pixel grid and the sweep's steps
    (those of the frames used, `used_d` in diopters)."""
    camera = stack.intrinsics
    diopters = np.round(used_d.double().cpu().numpy(), FOCUS_KEY_DIOPTER_DECIMALS)
    return (stack.height, stack.width, camera.fx, camera.fy, camera.cx, camera.cy, tuple(diopters))


OWN_TEXTURE_FULL = 1.0
"""Ratio of a pixel's own (3x3) texture to its window's at which its measurement counts in full."""


def own_texture_factor(guide: torch.Tensor, window_px: int) -> torch.Tensor:
    """(H, W) in [0, 1]: how much of the focus signal in a pixel's window is the pixel's own.

    A focus measure is a window average, so a flat pixel within half a window
    of an occlusion edge measures the edge, i.e. the depth of whichever surface
    makes the edge sharp, often the other one. Its own texture (3x3) is then
    far below its window's, and it should not anchor the fill. Textured pixels
    have a ratio near 1.
    """
    return own_texture_share(modified_laplacian(luminance(guide)[None])[0], window_px)


def own_texture_share(detail: torch.Tensor, window_px: int) -> torch.Tensor:
    """(H, W) in [0, 1]: mean of the (H, W) `detail` over 3x3 around each pixel over its mean over the window."""
    own = box_mean(detail[None], 3)[0]
    window = box_mean(detail[None], window_px)[0]
    return (own / window.clamp(min=1e-6) / OWN_TEXTURE_FULL).clamp(0.0, 1.0)


def front_edge_pixels(depth_m: torch.Tensor, confidence: torch.Tensor, anchor_depth_m: torch.Tensor,
                      anchor_confidence: torch.Tensor, flat: torch.Tensor, min_anchor_confidence: float,
                      occluder: torch.Tensor | None = None, reach_px: int = FRONT_EDGE_REACH_PX) -> torch.Tensor:
    """(H, W) bool: `flat` pixels whose focus peak (depth_m, confidence) is nearer than every textured anchor
    (not flat, anchor_confidence >= min_anchor_confidence) within `reach_px`. The peak may be the pixel's own
    or, for one without, the rims' around it (rim_candidate_depth, given FRONT_EDGE_MIN_CONFIDENCE).

    A flat pixel's peak is an edge in its window, sharp at the depth of the
    surface whose outline it is, the nearer one at an occlusion. Nearer than
    all textured surfaces around, it can only be the outline of the pixel's own
    surface: a flat object in front. (A flat wall behind a textured object reads
    the object's depth, as the object's own pixels do: not nearer, so not taken.)
    occluder_peak finds such pixels only where the farther texture shows as a
    second peak; this needs no second peak. The peak must have
    FRONT_EDGE_MIN_CONFIDENCE (a real edge), be FRONT_EDGE_MARGIN nearer, and
    the square hold FRONT_EDGE_MIN_TEXTURED_SHARE of textured anchors. Pixels
    in `occluder` (occluder_peak's) are neither textured anchors nor candidates.
    """
    textured = ~flat & (anchor_confidence >= min_anchor_confidence) & torch.isfinite(anchor_depth_m)
    if occluder is not None:
        textured &= ~occluder
        flat = flat & ~occluder
    textured_diopters = torch.where(textured, 1.0 / anchor_depth_m, 0.0)
    nearest_diopters = box_max(textured_diopters[None], reach_px)[0]
    textured_share = box_mean(textured.to(confidence.dtype)[None], reach_px)[0]
    own_diopters = torch.nan_to_num(1.0 / depth_m, nan=0.0)
    return (flat & (confidence >= FRONT_EDGE_MIN_CONFIDENCE) & (textured_share >= FRONT_EDGE_MIN_TEXTURED_SHARE)
            & (own_diopters > (1.0 + FRONT_EDGE_MARGIN) * nearest_diopters))


RIM_MIN_RISE_AT_5_FRAMES = 0.05
"""How far a textured pixel's focus curve must rise again after its nearest peak's valley, as a share of
its highest value, for that peak to be an occlusion rim's (occlusion_rim_depth), in sweeps of 5 frames or
fewer (rim_min_rise)."""


def rim_min_rise(frames: int) -> float:
    """The rise (two_peaked) a rim needs in a sweep of `frames` frames: RIM_MIN_RISE_AT_5_FRAMES up to 5,
    OCCLUDER_MIN_RISE (0.35, flat pixels' rule) from 10, linear between.

    In a coarse sweep a flat object's outline is sharp in one frame, and the farther texture seen through
    its blurred rim is sharp two or three frames on: the valley between is one frame, shallow, and the
    near peak often no more than a shoulder (seed 3001's box at 0.34 m, near peak 0.75 of the highest,
    valley 0.65). With 0.35 such outlines gave no rims, and their flat objects took the background's
    depth. Seeds 1000-1019 / 2000-2009 / 3000-3019, 5-frame sim, dense AbsRel at 0.35 (before), 0.15,
    0.05, 0: 0.0497 / 0.0688 / 0.0780, 0.0490 / - / 0.0761, 0.0491 / 0.0598 / 0.0712, 0.0490 / - / 0.0707;
    simfit 0.0643 -> 0.0632, NYU protocol 0.3730 -> 0.3702, at 0.8-6 m 0.1004 -> 0.0996 (0.05). In a
    10-frame sweep small rises are noise: sim 0.0400 at 0.35, 0.0399 at 0.25, 0.0411 at 0.15, 0.0412 at
    0.05. The shared Pixel stack at 0.05: its blank wall 0.84-0.87 m instead of 0.87-0.95 m (36 % of its
    pixels move by more than 2 %; at 0: 59 %, the wall 0.78-0.85 m)."""
    share = min(max((frames - 5) / 5.0, 0.0), 1.0)
    return RIM_MIN_RISE_AT_5_FRAMES + share * (OCCLUDER_MIN_RISE - RIM_MIN_RISE_AT_5_FRAMES)


RIM_MIN_CONFIDENCE = 0.2
"""Peak-fit confidence an occlusion rim's near peak needs (occlusion_rim_depth). Noise bumps on a rising
curve fitted 0.04-0.15 on the simulated scenes' rims; edges of flat objects 0.17-0.69."""
RIM_FIRST_FRAME_MIN_CONFIDENCE = 0.6
"""Confidence a rim's near peak needs when it is at the sweep's first frame (occlusion_rim_depth): a sweep
that starts at the scene's nearest surface puts a flat object there. Noise makes such peaks too: on the
shared Pixel stack 14280 rims peak at the first frame, 99 % of them below 0.49 (max 0.73), and at 0.2
they pulled its blank wall to 0.5 m (56 % of its pixels moved by more than 2 %); at 0.5 and 0.6 no pixel
moves. Seeds 1000-1019, 5 frames, dense AbsRel without / with 0.5 / 0.6 / 0.7: `simfit` 0.0825 / 0.0752
/ 0.0754 / 0.0757, `nyu_far` 0.1075 / 0.1030 / 0.1038 / 0.1065; `sim` (first frame at 0.3 m, nearer than
its objects) 0.0676 either way."""
RIM_REACH_PX = 11
"""Side of the square (the fill's grid) over which rim_candidate_depth averages the rims' near depths."""
RIM_MIN_SHARE = 0.05
"""Share of the square that must be rim pixels with a near peak for rim_candidate_depth to give a depth.
Single rims with a noise peak otherwise anchor flat surfaces far too near: on the shared Pixel stack,
with end-of-sweep near peaks allowed and no share floor, the blank wall beside the backpack came to
0.5 m, in front of the backpack. Shares 0.02, 0.03, 0.05 (first-frame peaks excluded, before
RIM_FIRST_FRAME_MIN_CONFIDENCE): seeds 1000-1019, 5 frames, sim dense AbsRel 0.0687, 0.0688, 0.0691;
Pixel stack pixels moved by more than 2 % against no rims: 24 %, 5.4 %, 5.3 % (the wall beside the
backpack came nearer at 0.02)."""


def occlusion_rim_depth(dff: FocusMeasureDFF, cut: torch.Tensor, rim: torch.Tensor,
                        diopters: torch.Tensor) -> torch.Tensor:
    """(H, W) depth (m) of the near peak of the `rim` pixels' focus curves, NaN elsewhere.

    `cut`: (N, H, W) curves cut after their nearest peak (occluder_peak_curves);
    `rim` (bool (H, W)): textured pixels whose curve has two peaks. Near an
    occlusion edge the window sees the edge, sharp where the occluder is in
    focus, and the farther texture, also through the occluder's blurred rim
    (the thin-lens renderer and a real lens both show it), which is often
    the higher peak; the rim's own fit then reads the background. The near
    peak is the occluder's depth. It counts as an interior peak with
    RIM_MIN_CONFIDENCE, or at the sweep's first frame (frames run near to
    far) with RIM_FIRST_FRAME_MIN_CONFIDENCE: there it is a bound (the
    parabola's vertex kept between the first frame and the midpoint to the
    second, PeakFit.end_depth_m), and noise on a rising curve makes weak ones.
    """
    near_m = torch.full(rim.shape, torch.nan, dtype=cut.dtype, device=cut.device)
    if bool(rim.any()):
        fit = dff.peak_fit(cut[:, rim][..., None], diopters)  # (N, K, 1): only the rim pixels
        depth_m, end_depth_m, confidence = fit.depth_m[:, 0], fit.end_depth_m[:, 0], fit.confidence[:, 0]
        at_first = (fit.peak_index[:, 0] == 0) & (confidence >= RIM_FIRST_FRAME_MIN_CONFIDENCE)
        interior_m = depth_m.masked_fill(confidence < RIM_MIN_CONFIDENCE, torch.nan)
        near_m[rim] = torch.where(at_first, end_depth_m, interior_m)
    return near_m


def rim_candidate_depth(rim_near_m: torch.Tensor, reach_px: int = RIM_REACH_PX) -> torch.Tensor:
    """(H, W) depth (m): the mean inverse depth of the rims' near peaks (occlusion_rim_depth) within
    `reach_px`, where they are at least RIM_MIN_SHARE of the square; NaN elsewhere.

    A flat pixel inside an object has no focus peak of its own; the object's
    outline does, as the near peak of its rim. front_edge_pixels then decides
    whether the pixel can be that occluder (nearer than every textured anchor
    around) or lies behind it.
    """
    found = torch.isfinite(rim_near_m)
    share = box_mean(found.to(rim_near_m.dtype)[None], reach_px)[0]
    near_diopters = box_mean(torch.where(found, 1.0 / rim_near_m, 0.0)[None], reach_px)[0] / share.clamp(min=1e-12)
    return torch.where(share >= RIM_MIN_SHARE, 1.0 / near_diopters.clamp(min=1e-6), torch.nan)


REGION_PX = 16
"""Side of the blocks over which a pixel without its own focus cue looks for the sharpest frame."""


def guide_frame_index(
    focus: torch.Tensor, peak_index: torch.Tensor, confidence: torch.Tensor, min_confidence: float, region_px: int = REGION_PX
) -> torch.Tensor:
    """(H, W) frame each guide pixel is taken from: its own sharpest where measured, else its region's.

    A flat pixel's own sharpest frame is chosen by noise; one where a nearby
    occlusion edge is blurred would smear the edge into the guide, and the
    fill would leak across it. The frame where its region (REGION_PX blocks
    and their neighbours; `region_px` at the size of `focus`) is sharpest shows nearby edges sharp.
    """
    height, width = peak_index.shape
    if min(height, width) < 2 * region_px:
        return peak_index
    regional = box_mean(F.avg_pool2d(focus[:, None], region_px, ceil_mode=True)[:, 0], 3)
    best_value, best = regional[0], torch.zeros_like(regional[0], dtype=torch.long)
    for index in range(1, regional.shape[0]):
        higher = regional[index] > best_value
        best_value = torch.where(higher, regional[index], best_value)
        best = torch.where(higher, index, best)
    regional_index = best.repeat_interleave(region_px, 0).repeat_interleave(region_px, 1)[:height, :width]
    return torch.where(confidence >= min_confidence, peak_index, regional_index)


def all_in_focus_guide(frames: torch.Tensor, peak_index: torch.Tensor) -> torch.Tensor:
    """(3, H, W) guide in [0, 1]: each pixel from the frame where its focus measure peaks."""
    index = peak_index[None, :, :, None].expand(1, *frames.shape[1:])
    return frames.gather(0, index)[0].permute(2, 0, 1).float() / 255.0  # uint8 or float frames in 0..255


def _gather_blocks(planes: torch.Tensor, index: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(height, width) from (N, height, width) planes, taking 2x2 block (i, j) from plane index[i, j]; odd edges replicated."""
    rows, cols = index.shape
    result = planes.new_empty(2 * rows, 2 * cols)
    for row_parity in (0, 1):
        for col_parity in (0, 1):
            block = planes[:, row_parity:2 * rows:2, col_parity:2 * cols:2]
            result[row_parity::2, col_parity::2] = block.gather(0, index[None])[0]
    if (height, width) != (2 * rows, 2 * cols):
        result = F.pad(result[None, None], (0, width - 2 * cols, 0, height - 2 * rows), mode="replicate")[0, 0]
    return result


def _half_size_planes(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminance in [0, 1] (N, H, W) of (N, H, W, 3) uint8 frames and the 2x2 means of its modified Laplacian.

    Frame by frame, so that each step's temporaries are one frame's: on a
    5x480x640 stack the whole-stack version spent 20-30 ms of its 40-50 ms in
    page faults of its 6-18 MB temporaries (this machine, one thread). On the
    CPU OpenCV converts and halves (5.1 against 9.6 ms a 5x480x640 stack, one thread).
    """
    count, height, width = frames.shape[:3]
    luma = frames.new_empty((count, height, width), dtype=torch.float32)
    fine = frames.new_empty((count, height // 2, width // 2), dtype=torch.float32)
    if opencv_applies(luma):
        weights = np.array([LUMA_WEIGHTS], dtype=np.float32) / 255.0
        for index in range(count):
            plane = luma[index].numpy()
            cv2.transform(frames[index].numpy().astype(np.float32), weights, dst=plane[..., None])
            _half_mean(modified_laplacian(luma[index][None])[0].numpy(), fine[index].numpy())
        return luma, fine
    weights = _luma_weights(frames.device, 1.0 / 255.0)
    for index in range(count):
        plane = luma[index]
        torch.matmul(frames[index].float(), weights, out=plane)
        torch.div(sum_pool_2x2(modified_laplacian(plane[None])[0]), 4.0, out=fine[index])
    return luma, fine


def _blocks_to_pixels(blocks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(height, width) bool, each 2x2 block of pixels its (h, w) bool block's value; odd edges replicated."""
    rows, cols = blocks.shape
    pixels = blocks[:, None, :, None].expand(rows, 2, cols, 2).reshape(2 * rows, 2 * cols)
    if (2 * rows, 2 * cols) == (height, width):
        return pixels
    return _replicate_to(pixels[None].float(), height, width)[0] > 0.5  # replicate padding takes no bool


def _replicate_to(planes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, height, width) from (K, h, w) planes, h and w at most one less, by replicating the last row and column."""
    rows, cols = planes.shape[-2:]
    if (rows, cols) == (height, width):
        return planes  # F.pad copies even when it pads nothing
    return F.pad(planes[None], (0, width - cols, 0, height - rows), mode="replicate")[0]


def _antialiased_half_size(luma: torch.Tensor) -> torch.Tensor:
    """(N, H // 2, W // 2) 2x2 means of (N, H, W) planes first blurred by [1 2 1] / 4 along each axis: a
    [1 3 3 1] / 8 decimation, for relative blur.

    The 2x2 mean alone lets a fine texture's harmonics above the half size's
    Nyquist alias to low frequencies in the sharp frame and not in the blurred
    one; relative blur, which compares the two, then reads a moire. Seeds
    1000-1019, 5-frame sim: the end-of-sweep pixels' error about their scene's
    median 0.122 -> 0.069 on seed 1008's checkered wall; dense AbsRel 0.0555 ->
    0.0548, 10 frames 0.0433 -> 0.0403, simfit 0.0731 -> 0.0714 and 0.0437 -> 0.0424;
    seeds 2000-2009 0.0788 -> 0.0753, simfit 0.0834 -> 0.0778. Also for the focus
    measure's coarse band it cost nyu_far 0.1031 -> 0.1114, so that keeps the 2x2 mean (_dense).
    1.4 ms a 5x480x640 stack on the CPU (one thread).
    """
    count, height, width = luma.shape
    half = luma.new_empty((count, height // 2, width // 2))
    if opencv_applies(luma):
        blurred = np.empty((height, width), dtype=np.float32)
        for index in range(count):
            cv2.GaussianBlur(luma[index].numpy(), (3, 3), 0, dst=blurred, borderType=cv2.BORDER_REPLICATE)
            _half_mean(blurred, half[index].numpy())
        return half
    taps = torch.tensor([0.25, 0.5, 0.25], device=luma.device)
    planes = F.pad(luma[:, None], (1, 1, 1, 1), mode="replicate")
    planes = F.conv2d(F.conv2d(planes, taps.view(1, 1, 1, 3)), taps.view(1, 1, 3, 1))[:, 0]
    return torch.div(sum_pool_2x2(planes), 4.0, out=half)


def _half_mean(plane: np.ndarray, out: np.ndarray) -> None:
    """2x2 means of an (H, W) float32 array into (H // 2, W // 2) `out` (an odd last row or column dropped)."""
    rows, cols = out.shape
    cv2.resize(plane[:2 * rows, :2 * cols], (cols, rows), dst=out, interpolation=cv2.INTER_AREA)


def _luminance_unit(frames: torch.Tensor) -> torch.Tensor:
    """(N, H, W) luminance in [0, 1] from (N, H, W, 3) uint8 frames."""
    return frames.float() @ _luma_weights(frames.device, 1.0 / 255.0)


def _luma_weights(device, scale: float) -> torch.Tensor:
    return torch.tensor(LUMA_WEIGHTS, device=device) * scale


@contextlib.contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
