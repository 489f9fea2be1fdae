"""Peak memory of extraction must not grow with the number of inputs.

Runs extraction of the default gallery's layers over N and 10 N inputs, each in a fresh
process, and prints the ratio of peak resident memory (target: within 1.10x).
Usage: python benchmarks/extract_memory.py [N]   (default N = 200; below ~300 inputs the
allocator is still warming up, which is start-up cost, not growth)
"""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def child(count: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import default_model_and_inputs, first

    from galleria.cache import Cache
    from galleria.extract.run import extract

    config, model, layout, inputs = default_model_and_inputs()
    with tempfile.TemporaryDirectory() as cache_dir:
        extract(model, layout, first(inputs, count), config, Cache(Path(cache_dir)))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def peak(count: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", str(count)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    small, large = peak(n), peak(10 * n)
    print(f"peak RSS, {n} inputs: {small / 1024:.0f} MiB; {10 * n} inputs: {large / 1024:.0f} MiB")
    print(f"ratio {large / small:.3f} (target <= 1.10)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        main()
