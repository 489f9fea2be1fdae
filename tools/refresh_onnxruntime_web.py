"""Refresh the live probe's vendored runtime from the npm package onnxruntime-web.

    python tools/refresh_onnxruntime_web.py                      # the pinned version, checked
    python tools/refresh_onnxruntime_web.py --version X --integrity sha512-...   # move the pin

Downloads the package's tarball from the npm registry, refuses it unless its SHA-512 is the
pinned integrity (the registry's ``dist.integrity``), and writes
``themes/default/vendor/onnxruntime-web/runtime.js``: the WebAssembly backend's ES module and
binary, gzip-compressed and base64-encoded inside one script, because pages opened from
``file://`` can load scripts but not fetch files. ``SOURCE.json`` beside it records where it came
from and the SHA-256 of every file; the tests check runtime.js against it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from galleria.probe.script import packed  # noqa: E402 - the site's own encoding of what pages load

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
MODULE = "package/dist/ort.wasm.bundle.min.mjs"  # the WebAssembly backend alone, its loader bundled in
BINARY = "package/dist/ort-wasm-simd-threaded.wasm"  # runs single-threaded without cross-origin isolation
FOLDER = Path(__file__).resolve().parent.parent / "themes" / "default" / "vendor" / "onnxruntime-web"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--integrity", default=INTEGRITY, help="the registry's dist.integrity for that version")
    args = parser.parse_args()
    url = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{args.version}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        tarball = response.read()
    algorithm, _, expected = args.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        print(f"error: {url} has {algorithm} {actual}, not the pinned {expected}; not vendored", file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        files = {name: archive.extractfile(name).read() for name in (MODULE, BINARY, "package/package.json")}
    license_name = json.loads(files["package/package.json"])["license"]
    script = (f"/* onnxruntime-web {args.version} ({license_name} licence, see LICENSE): {MODULE.split('/')[-1]} and "
              f"{BINARY.split('/')[-1]}, gzip + base64; written by tools/refresh_onnxruntime_web.py */\n"
              f'galleriaProbeRuntime("{packed(files[MODULE])}", "{packed(files[BINARY])}");\n').encode()
    FOLDER.mkdir(parents=True, exist_ok=True)
    (FOLDER / "runtime.js").write_bytes(script)
    source = {"package": "onnxruntime-web", "version": args.version, "tarball": url, "integrity": args.integrity,
              "license": license_name, "sha256": {MODULE: hashlib.sha256(files[MODULE]).hexdigest(),
                                                   BINARY: hashlib.sha256(files[BINARY]).hexdigest(),
                                                   "runtime.js": hashlib.sha256(script).hexdigest()}}
    (FOLDER / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
    print(f"vendored onnxruntime-web {args.version}: runtime.js {len(script) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
