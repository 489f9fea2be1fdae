"""What an image patch looks like, in a few measured words: its colour and the direction of its edges.

The descriptors automatic labels offer early layers (extract/labels.py), whose units respond to
colours and edges long before classes mean anything to them. Each is a plain statement about the
patch a unit saw at its peak (its receptive field there), measured on the pixels the model read.
"""
from __future__ import annotations

import colorsys

import numpy as np

HUES = (("red", 0, 15), ("orange", 15, 45), ("yellow", 45, 70), ("green", 70, 160), ("cyan", 160, 200),
        ("blue", 200, 260), ("purple", 260, 300), ("pink", 300, 345), ("red", 345, 360))  # degrees
COHERENT = 0.3  # edges "run one way" when the structure tensor's coherence is at least this
BUSY, FLAT = 0.01, 0.0005  # mean squared gradient per pixel (of 0..1 intensities): a busy, a flat patch

NAMES = ("mostly dark", "mostly light", "mostly grey", *dict.fromkeys(f"mostly {name}" for name, _, _ in HUES),
         "vertical edges", "horizontal edges", "diagonal edges (/)", "diagonal edges (\\)", "busy texture",
         "flat (little texture)")


def describe(patch: np.ndarray) -> np.ndarray:
    """Which of NAMES hold for a patch [H, W, 3] of RGB values in 0..1."""
    found = dict.fromkeys(NAMES, False)
    r, g, b = patch.reshape(-1, 3).mean(0)
    hue, saturation, value = colorsys.rgb_to_hsv(float(r), float(g), float(b))
    found["mostly dark"] = value < 0.25
    found["mostly light"] = value > 0.8 and saturation < 0.2
    found["mostly grey"] = saturation < 0.15 and 0.25 <= value <= 0.8
    if saturation >= 0.25 and value >= 0.2:
        degrees = hue * 360
        name = next(name for name, low, high in HUES if low <= degrees < high or degrees == 360 == high)
        found[f"mostly {name}"] = True
    grey = patch.mean(2)
    if min(grey.shape) >= 2:
        gy, gx = np.gradient(grey)
        jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
        energy = jxx + jyy
        found["busy texture"] = energy > BUSY
        found["flat (little texture)"] = energy < FLAT
        if energy > FLAT and np.hypot(jxx - jyy, 2 * jxy) / energy >= COHERENT:
            # the gradient's direction; edges run across it
            angle = np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)) % 180
            edges = ("vertical edges" if angle < 22.5 or angle >= 157.5 else "horizontal edges" if 67.5 <= angle < 112.5
                     else "diagonal edges (/)" if angle < 67.5 else "diagonal edges (\\)")
            found[edges] = True
    return np.array([found[name] for name in NAMES], dtype=bool)
