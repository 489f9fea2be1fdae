"""Content-keyed cache on disk: results are stored under a hash of everything they depend on.

An entry appears only once it is complete (written to a temporary folder, then renamed), so an
interrupted build never leaves a half-written entry that a later build would trust.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def content_key(*parts: object) -> str:
    """A short stable hash of the parts' reprs; parts must have deterministic reprs."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


class Cache:
    def __init__(self, root: Path):
        self.root = root

    def entry(self, kind: str, key: str) -> Path | None:
        """The folder of a finished entry, or None."""
        path = self.root / kind / key
        return path if path.is_dir() else None

    @contextmanager
    def writing(self, kind: str, key: str) -> Iterator[Path]:
        """A fresh folder to fill; it becomes the entry only if the block finishes."""
        parent = self.root / kind
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent))
        try:
            yield tmp
            final = parent / key
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def file(self, kind: str, key: str, suffix: str) -> Path:
        """Where a single cached file lives (two-level fan-out keeps folders small)."""
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def put_file(self, kind: str, key: str, suffix: str, data: bytes) -> Path:
        """Store a file; a temporary name of its own first, so that processes storing the same
        file at once (ranks of a torchrun build) never write into one another's."""
        path = self.file(kind, key, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
