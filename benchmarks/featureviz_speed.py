"""Feature visualization against torch-lucent at its best: same model, units and image size, in one run.

Baseline: torch-lucent's render_vis with its defaults (FFT parameterization, decorrelated colour,
its standard transformations) and every unit in one batch (param.image(size, batch=n), each image
with its own unit's channel objective), for 512 steps, with the model's own normalization.
Measured: galleria's optimizer on the same units in one batch, at the fewest steps of 32, 64, 128,
256 whose images reach lucent's objective, evaluated the same way for both: each unit's mean on its
final, untransformed image. Prints the time ratio (target: lucent / galleria >= 3, at an objective
at least lucent's) and how many steps that took.

torch-lucent is a benchmark-only dependency and pins an old kornia; install it with
  .venv/bin/pip install torch-lucent --no-deps && .venv/bin/pip install kornia decorator ipython
Usage: python benchmarks/featureviz_speed.py [LAYER] [UNITS] [SIZE] [LUCENT_STEPS]   (blocks.4 8 128 512)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import default_model_and_inputs  # noqa: E402

from galleria.config import FeatureVizConfig  # noqa: E402
from galleria.visualize.featureviz import VizJob, _layer_output, input_colours, optimize  # noqa: E402
from galleria.visualize.image_param import colour_basis  # noqa: E402


def lucent_modules():
    import kornia
    import kornia.geometry.transform as geometry

    # lucent 0.1.8 calls kornia functions that newer kornia keeps only under kornia.geometry
    kornia.get_rotation_matrix2d = geometry.get_rotation_matrix2d
    kornia.warp_affine = geometry.warp_affine
    from lucent.optvis import objectives, param, render, transform

    return objectives, param, render, transform


def main() -> None:
    layer = sys.argv[1] if len(sys.argv) > 1 else "blocks.4"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    lucent_steps = int(sys.argv[4]) if len(sys.argv) > 4 else 512
    objectives, param, render, transform = lucent_modules()
    config, model, layout, inputs = default_model_and_inputs()
    module, pre = model.module, model.config.preprocessing
    units = list(range(count))
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)

    def reached(images: torch.Tensor) -> list[float]:
        """Each unit's mean over positions on its own image [B, C, H, W] in [0, 1]."""
        with torch.no_grad(), _layer_output(module, layer, None) as run:
            acts = run((images - mean) / std)
        return acts[torch.arange(len(units)), torch.tensor(units)].flatten(1).mean(1).tolist()

    name = layer.replace(".", "_")
    objective = objectives.channel(name, units[0], batch=0)
    for row, unit in enumerate(units[1:], start=1):
        objective = objective + objectives.channel(name, unit, batch=row)
    transforms = transform.standard_transforms + [lambda x: (x - mean) / std]
    start = time.perf_counter()
    images = render.render_vis(module, objective, lambda: param.image(size, batch=count), transforms=transforms,
                               thresholds=(lucent_steps,), preprocess=False, progress=False, show_image=False,
                               fixed_image_size=size)[0]
    lucent_seconds = time.perf_counter() - start
    lucent = reached(torch.from_numpy(images).permute(0, 3, 1, 2))
    n = len(units)
    print(f"{layer}, {n} units in one batch, {size} px")
    print(f"torch-lucent, batched: {lucent_steps} steps in {lucent_seconds:.1f} s, objective {sum(lucent) / n:.2f} "
          "(mean over units)")

    basis = colour_basis(input_colours(inputs, pre), pre.channels)
    layer_layout = next(info.layout for info in layout.layers if info.name == layer)
    jobs = [VizJob(layer, i, unit, "channel") for i, unit in enumerate(units)]
    for steps in (32, 64, 128, 256):
        settings = FeatureVizConfig(steps=steps, size=size, batch=count)
        start = time.perf_counter()
        pixels, _, _ = optimize(module, layer, layer_layout, jobs, pre, basis, settings, (size, size),
                                torch.device("cpu"))
        ours_seconds = time.perf_counter() - start
        ours = reached(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
        wins = sum(o >= l for o, l in zip(ours, lucent))
        print(f"galleria: {steps} steps in {ours_seconds:.1f} s, objective {sum(ours) / n:.2f} "
              f"(at least lucent's on {wins} of {n} units)")
        if sum(ours) >= sum(lucent):
            break
    print(f"time ratio {lucent_seconds / ours_seconds:.2f} (target >= 3) at objective ratio "
          f"{sum(ours) / max(sum(lucent), 1e-9):.2f} (target >= 1): galleria needs {steps} steps for lucent's "
          f"{lucent_steps}")


if __name__ == "__main__":
    main()
