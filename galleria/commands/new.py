"""``galleria new DIR``: a starter site to change, rather than a blank page to fill.

The starter (``galleria/starter/``) builds offline from packages galleria depends on, and shows
where each habit lives: notes in ``content/``, a theme override in ``overrides/``, a GitHub
Actions workflow that publishes to Pages.
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from galleria.errors import UsageError
from galleria.schema import SHIPPED

STARTER = Path(__file__).resolve().parents[1] / "starter"
SCHEMA = "site.schema.json"  # beside site.yaml, whose first line points editors at it: no network needed


def new(directory: str | Path) -> list[Path]:
    """Copy the starter into ``directory`` (created if missing; it must be empty), and site.yaml's
    schema beside it; returns the files written, relative to it."""
    dest = Path(directory)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty folder: choose a new folder name, or empty it")
    written = []
    for source in sorted(STARTER.rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            name = source.relative_to(STARTER)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / name)  # contents only: an installed package may be read-only
            written.append(name)
    shutil.copyfile(SHIPPED, dest / SCHEMA)
    return written + [Path(SCHEMA)]


def next_steps(directory: str | Path, files: list[Path]) -> str:
    """What was made, and the two commands that turn it into a site."""
    listing = "\n".join(f"  {f.as_posix()}" for f in files)
    return (f"Created a starter gallery in {directory}:\n{listing}\n"
            f"Next: cd {shlex.quote(str(directory))}, then\n"
            f"  galleria build    # write the site into site/ (under a minute on a laptop's CPU)\n"
            f"  galleria serve    # or preview it in a browser, rebuilt as you edit\n"
            f"and make site.yaml yours: your model, its layers, your inputs. To publish, push it to\n"
            f"GitHub (.github/workflows/gallery.yml deploys each push to Pages) or run galleria gh-deploy.")
