"""Time from a visitor's input to the probe's answer, in headless Chromium on the default gallery.

For each default model with a probe in the page: opens a unit page of its first layer from
file://, gives it scikit-image's chelsea photo or a line of Python, and times (in the page) from
the input to the unit's value drawn. The first run includes loading the WebAssembly runtime and
the model and creating the session; the next RUNS reuse them. The baseline, measured in the same
run, is the physical limit: the same ONNX graph in onnxruntime's Python CPU runtime with one
thread (the page has one), input already prepared. Targets: under 1 s for an image, under 200 ms
for a line of text (warm). Usage: python benchmarks/probe_latency.py [site folder] (default:
builds site.yaml into site/, or finds it up to date).
"""
from __future__ import annotations

import base64
import gzip
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from galleria.commands.build import build

REPO = Path(__file__).resolve().parents[1]
RUNS = 5
PHOTO = Path(__import__("skimage").__file__).parent / "data" / "chelsea.png"
LINE = "    for part in msg.walk():  # every part of the message"
TARGET = {"image": 1000.0, "text": 200.0}


def bare_forward_ms(script: Path, feed: dict) -> float:
    """The graph alone in onnxruntime, one thread: median over RUNS after one warm-up."""
    import onnxruntime

    graph = gzip.decompress(base64.b64decode(re.search(r'"([A-Za-z0-9+/=]{64,})"\);\s*$', script.read_text()).group(1)))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    if feed["kind"] == "image":
        x = np.random.default_rng(0).standard_normal((1, feed["channels"], *feed["size"])).astype(np.float32)
    else:
        x = np.zeros((1, feed["length"] or len(LINE) + len(feed["lead"]) + len(feed["trail"])), np.int64)
    times = []
    for _ in range(RUNS + 1):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def main() -> int:
    site = (Path(sys.argv[1]) if len(sys.argv) > 1 else Path(build(REPO / "site.yaml", quiet=True).output)).resolve()
    import json

    chromium = shutil.which("chromium")
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for script in sorted(site.glob("*/probe.js")):
            text = script.read_text()
            meta = json.loads(text[len("galleriaProbeModel("):text.rindex(', "')])
            feed, layer = meta["feed"], meta["layers"][0]
            url = (site / layer["url"] / str(layer["units"][0]) / "index.html").as_uri()
            page = browser.new_page()
            page.goto(url)
            times = []
            for run in range(RUNS + 1):
                page.evaluate("() => document.querySelector('.probe-result').removeAttribute('data-probe-ms')")
                if feed["kind"] == "image":
                    page.set_input_files(".probe input[type=file]", [])
                    page.set_input_files(".probe input[type=file]", str(PHOTO))
                else:
                    page.fill(".probe textarea", LINE)
                    page.click(".probe button[type=submit]")
                page.wait_for_selector(".probe-result[data-probe-ms]", timeout=120_000)
                times.append(float(page.get_attribute(".probe-result", "data-probe-ms")))
            page.close()
            warm = statistics.median(times[1:])
            bare = bare_forward_ms(script, feed)
            rows.append((meta["model"], feed["kind"], script.stat().st_size / 1e6, times[0], warm, bare))
        browser.close()
    print(f"{'model':<22}{'input':<7}{'probe.js':>10}{'first':>10}{'warm':>9}{'bare':>9}{'ratio':>8}  target")
    failed = False
    for model, kind, size, first, warm, bare in rows:
        ok = warm <= TARGET[kind]
        failed |= not ok
        print(f"{model:<22}{kind:<7}{size:>8.1f}MB{first:>8.0f}ms{warm:>7.0f}ms{bare:>7.1f}ms{warm / bare:>8.2f}  "
              f"{'ok' if ok else 'MISSED'} (warm under {TARGET[kind]:.0f} ms)")
    print("first: the first input, loading the runtime and the model; warm: median of the next "
          f"{RUNS}; bare: the graph in onnxruntime (Python, 1 thread); ratio: warm / bare")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
