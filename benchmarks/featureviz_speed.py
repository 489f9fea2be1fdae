"""Feature visualization against torch-lucent: same model, units, steps and image size, in one run.

Baseline: torch-lucent's render_vis with its defaults (FFT parameterization, decorrelated colour,
its standard transformations), one unit at a time as its API works, at our image size and with
the model's own normalization. Measured: galleria's optimizer with the units in one batch.
Prints CPU seconds per unit (target: lucent / galleria >= 3 at batch >= 8) and the objective each
reaches, evaluated the same way for both on the final, untransformed image (target: galleria's at
least lucent's).

torch-lucent is a benchmark-only dependency and pins an old kornia; install it with
  .venv/bin/pip install torch-lucent --no-deps && .venv/bin/pip install kornia decorator ipython
Usage: python benchmarks/featureviz_speed.py [LAYER] [UNITS] [STEPS] [SIZE]   (blocks.4 8 128 128)
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
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 128
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

    lucent_images = []
    start, cpu = time.perf_counter(), time.process_time()
    for unit in units:
        transforms = transform.standard_transforms + [lambda x: (x - mean) / std]
        lucent_images.append(torch.from_numpy(render.render_vis(
            module, objectives.channel(layer.replace(".", "_"), unit), lambda: param.image(size),
            transforms=transforms, thresholds=(steps,), preprocess=False, progress=False, show_image=False,
            fixed_image_size=size)[0]).permute(0, 3, 1, 2))
    lucent_wall, lucent_cpu = time.perf_counter() - start, time.process_time() - cpu
    lucent_values = reached(torch.cat(lucent_images))

    basis = colour_basis(input_colours(inputs, pre), pre.channels)
    settings = FeatureVizConfig(steps=steps, size=size, batch=count)
    jobs = [VizJob(layer, i, unit, "channel") for i, unit in enumerate(units)]
    start, cpu = time.perf_counter(), time.process_time()
    layer_layout = next(info.layout for info in layout.layers if info.name == layer)
    pixels, _, _ = optimize(module, layer, layer_layout, jobs, pre, basis, settings, (size, size), torch.device("cpu"))
    ours_wall, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    ours_values = reached(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)

    n = len(units)
    print(f"{layer}, {n} units, {steps} steps at {size} px")
    print(f"torch-lucent: {lucent_cpu / n:.2f} CPU s/unit ({lucent_wall / n:.2f} s wall), "
          f"objective {sum(lucent_values) / n:.2f} mean over units")
    print(f"galleria (batch {n}): {ours_cpu / n:.2f} CPU s/unit ({ours_wall / n:.2f} s wall), "
          f"objective {sum(ours_values) / n:.2f}")
    wins = sum(o >= l for o, l in zip(ours_values, lucent_values))
    print(f"speed ratio {lucent_cpu / ours_cpu:.2f} (target >= 3); objective ratio "
          f"{sum(ours_values) / max(sum(lucent_values), 1e-9):.2f} (target >= 1; higher on {wins} of {n} units)")


if __name__ == "__main__":
    main()
