"""A simulated variable-focus camera: procedural scenes rendered through a thin lens.

It needs no hardware and knows the true depth of every pixel, so the demo can
show accuracy figures and tests can check depth backends against ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..stack.camera import CameraIntrinsics, ThinLens
from ..stack.focal_stack import FocalStack, diopter_sweep, validate_focus_distances
from ..sim.scene import make_scene
from ..sim.thin_lens import add_sensor_noise, quantise_frames, render_focal_stack_float
from .base import CaptureBackend

DEFAULT_SIMULATED_LENS = ThinLens(focal_length_m=0.012, f_number=1.4, pixel_pitch_m=15e-6)
"""12 mm f/1.4 lens on a sensor read out with 15 um (binned) pixels.

At 320x240 that is a 4.8 x 3.6 mm (1/3-inch) sensor with a 23 degree
horizontal field of view; at 640x480 a 2/3-inch one with 44 degrees. The blur
circle grows by about 7 pixels per diopter of defocus, so across 0.3-5 m
(3.1 diopters) it spans 0 to about 22 pixels: strong, measurable focus cues,
like a fast C-mount lens or a liquid lens on a machine-vision camera.
"""

DEFAULT_FOCUS_DISTANCES_M = tuple(float(d) for d in diopter_sweep(0.3, 5.0, 10))
"""10 focus distances from 0.3 to 5 m, evenly spaced in diopters."""


class SimulatedCapture(CaptureBackend):
    """Focal stacks of procedural scenes (core.scene) rendered by the layered thin-lens renderer.

    Frames come back sorted near to far with `reference_index` 0, the
    nearest-focus frame (the view the HybridDepth reference registers to and
    feeds to its relative branch); the renderer models no focus breathing, so
    every frame shares one view and the stack is `registered`. The clean frames
    of a scene are rendered once; every stack gets fresh sensor noise, seeded
    by `seed` and the stack count, so runs are reproducible.

    scene_change_every: 0 keeps scene `seed` forever; k > 0 moves to the next
      seed (seed + 1, seed + 2, ...) every k stacks.
    noise_std: Gaussian sensor noise in 8-bit digital numbers.
    """

    name = "simulated"

    def __init__(
        self,
        focus_distances_m: Sequence[float] = DEFAULT_FOCUS_DISTANCES_M,
        width: int = 320,
        height: int = 240,
        lens: ThinLens = DEFAULT_SIMULATED_LENS,
        seed: int = 0,
        noise_std: float = 1.0,
        scene_change_every: int = 0,
        psf: str = "disc",
    ) -> None:
        self.focus_distances_m = validate_focus_distances(focus_distances_m, expected_count=None)
        lens.validate()
        if width < 8 or height < 8:
            raise ValueError(f"image of {width}x{height} is too small")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if scene_change_every < 0:
            raise ValueError(f"scene_change_every must be >= 0, got {scene_change_every}")
        if self.focus_distances_m[0] <= lens.focal_length_m:
            raise ValueError(
                f"nearest focus distance {self.focus_distances_m[0]} m is inside the "
                f"focal length {lens.focal_length_m} m"
            )
        self.width = width
        self.height = height
        self.lens = lens
        self.seed = seed
        self.noise_std = noise_std
        self.scene_change_every = scene_change_every
        self.psf = psf
        self.intrinsics = CameraIntrinsics.from_lens(lens, width, height)
        self.ground_truth_depth_m: np.ndarray | None = None
        """(H, W) float32 true depth in metres of the last stack's scene; None before the first."""
        self._stack_count = 0
        self._scene_seed: int | None = None
        self._clean_frames: np.ndarray | None = None

    def capture_stack(self) -> FocalStack:
        scene_seed = self.seed
        if self.scene_change_every:
            scene_seed += self._stack_count // self.scene_change_every
        if scene_seed != self._scene_seed:
            scene = make_scene(scene_seed, self.height, self.width)
            self._clean_frames = render_focal_stack_float(
                scene.rgb, scene.depth_m, self.focus_distances_m, self.lens, psf=self.psf
            )
            self.ground_truth_depth_m = scene.depth_m
            self._scene_seed = scene_seed
        frames = self._clean_frames
        if self.noise_std > 0:
            rng = np.random.default_rng((self.seed, self._stack_count))
            frames = add_sensor_noise(frames, self.noise_std, rng)
        self._stack_count += 1
        return FocalStack(
            frames=quantise_frames(frames),
            focus_distances_m=self.focus_distances_m.copy(),
            intrinsics=self.intrinsics,
            reference_index=0,
            registered=True,
            stamp_s=time.time(),
        )
