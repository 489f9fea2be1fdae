"""Extraction must cost little more than the forward passes it needs.

Baseline: the bare model over the same inputs and batch size, on tensors already decoded
(so only the forward passes are timed); also shown, a plain loop that decodes each batch and
runs it. Measured: galleria's whole extraction of the default gallery's layers, image decoding
included. Prints the ratios (target: within 1.10x of the bare forward passes).
Usage: python benchmarks/extract_speed.py [N]   (default N = 640: fixed costs amortized as in a build)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import default_model_and_inputs, first  # noqa: E402

from galleria.cache import Cache  # noqa: E402
from galleria.extract.run import extract  # noqa: E402
from galleria.sources.images import ImageLoader  # noqa: E402

ROUNDS = 2


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 640
    config, model, layout, inputs = default_model_and_inputs()
    inputs = first(inputs, n)
    batch = config.extract.batch_size
    loader = ImageLoader(model.config.preprocessing)
    batches = [loader.batch(list(inputs.items[i:i + batch]))[0] for i in range(0, n, batch)]
    bare_times, loop_times, full_times = [], [], []
    for _ in range(ROUNDS):  # interleaved, best of each: other load on the machine hits all alike
        with torch.inference_mode():
            model.module(batches[0])  # warm-up
            start = time.perf_counter()
            for x in batches:
                model.module(x)
            bare_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(0, n, batch):  # what a plain script does: decode a batch, run it
                model.module(loader.batch(list(inputs.items[i:i + batch]))[0])
            loop_times.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as cache_dir:
            start = time.perf_counter()
            extract(model, layout, inputs, config, Cache(Path(cache_dir)))
            full_times.append(time.perf_counter() - start)
    bare, loop, full = min(bare_times), min(loop_times), min(full_times)
    print(f"{n} inputs, batch {batch}: bare forward {bare:.2f} s ({n / bare:.1f}/s), decode + forward "
          f"{loop:.2f} s ({n / loop:.1f}/s), extraction {full:.2f} s ({n / full:.1f}/s)")
    print(f"ratio to bare forward {full / bare:.3f} (target <= 1.10); to decode + forward {full / loop:.3f}")


if __name__ == "__main__":
    main()
