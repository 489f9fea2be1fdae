"""How much a written site weighs, against what GitHub Pages publishes: at most 1 GB per site and
100 MB per file. The build summary states it; over a limit, the largest parts are named."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SITE_LIMIT = 1_000_000_000  # bytes GitHub Pages publishes per site
FILE_LIMIT = 100_000_000  # bytes it takes in one file


@dataclass(frozen=True)
class Footprint:
    bytes: int
    files: int
    largest_file: tuple[str, int]  # (site path, bytes)
    parts: tuple[tuple[str, int], ...]  # (folder, bytes) two levels deep, largest first: a model's layer, images

    def over_limits(self) -> list[str]:
        """What GitHub Pages would refuse, in words naming the largest parts; empty when it fits."""
        problems = []
        if self.bytes > SITE_LIMIT:
            parts = ", ".join(f"{path} {megabytes(size)}" for path, size in self.parts[:3])
            problems.append(f"the site is {megabytes(self.bytes)}, over GitHub Pages' 1 GB per site "
                            f"(largest parts: {parts}); fewer layers, units or examples make it smaller")
        path, size = self.largest_file
        if size > FILE_LIMIT:
            problems.append(f"{path} is {megabytes(size)}, over GitHub Pages' 100 MB per file")
        return problems


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size < 1e9 else f"{size / 1e9:,.2f} GB"


def footprint(root: Path) -> Footprint:
    """Every file under ``root`` counted at its full size (a file linked from the cache is uploaded
    like any other)."""
    total = files = 0
    largest = ("", 0)
    parts: dict[str, int] = {}
    stack = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = f"{rel}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, path + "/"))
                    continue
                size = entry.stat(follow_symlinks=False).st_size
                total += size
                files += 1
                if size > largest[1]:
                    largest = (path, size)
                part = "/".join(path.split("/")[:2]) if path.count("/") >= 2 else path.split("/")[0]
                parts[part] = parts.get(part, 0) + size
    return Footprint(total, files, largest, tuple(sorted(parts.items(), key=lambda p: -p[1])))
