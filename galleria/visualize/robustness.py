"""Random small transformations applied at every optimization step.

An image that excites a unit only at one exact pixel alignment is an adversarial pattern, not
a feature; requiring it to keep working while jittered, scaled and rotated removes those
(Mordvintsev et al. 2015, Olah et al. 2017). All of it is one affine resample per step, with
the same draw for every image of a batch, so an image's result does not depend on its batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

JITTER = 0.08  # largest shift, as a fraction of the image side (about 10 px at 128 px)
SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
DEGREES = 10
FILL = 0.5  # what shows where the moved image leaves the frame: mid-grey


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """images [B, C, H, W] in [0, 1], shifted, scaled and rotated by one random draw."""
    draw = torch.rand(4, generator=generator).tolist()
    angle = math.radians((2 * draw[0] - 1) * DEGREES)
    scale = SCALES[min(int(draw[1] * len(SCALES)), len(SCALES) - 1)]
    shift_x, shift_y = ((2 * d - 1) * 2 * JITTER for d in draw[2:])  # grid coordinates span 2
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[cos, -sin, shift_x], [sin, cos, shift_y]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL
