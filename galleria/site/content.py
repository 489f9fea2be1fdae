"""Notes people write about models, layers and units: Markdown files whose paths mirror urls.

``content/<model>/<layer>/<unit>.md`` (or ``.../<unit>/index.md``) annotates a unit; YAML front
matter gives a short label shown in grids, and tags.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import markdown
import yaml
from markupsafe import Markup

from galleria.errors import ConfigError

FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)


@dataclass(frozen=True)
class Note:
    label: str
    tags: tuple[str, ...]
    html: Markup
    text: str  # the Markdown source without front matter
    file: str


def load_notes(content_dir: Path) -> dict[str, Note]:
    """Notes keyed by the page folder they belong to, e.g. 'efficientnet-lite0/blocks.4/37'."""
    notes: dict[str, Note] = {}
    for path in note_files(content_dir):
        rel = path.relative_to(content_dir).with_suffix("")
        key = str(rel.parent if rel.name == "index" else rel).replace("\\", "/")
        key = "" if key == "." else key
        if key in notes:
            raise ConfigError(f"two notes for the same page ({notes[key].file} and this one)", str(path),
                              hint="keep one of them")
        notes[key] = read_note(path)
    return notes


def note_files(content_dir: Path) -> list[Path]:
    """The Markdown files under ``content_dir``, sorted; not an editor's lock or autosave file
    (``.#x.md``), which is not a note."""
    if not content_dir.is_dir():
        return []
    return sorted(p for p in content_dir.rglob("*.md") if not p.name.startswith((".", "#")))


def read_note(path: Path) -> Note:
    text = path.read_text(encoding="utf-8")
    meta: dict = {}
    match = FRONT_MATTER.match(text)
    if match:
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(f"invalid front matter: {getattr(exc, 'problem', exc)}", str(path),
                              mark.line + 2 if mark else None) from None
        if not isinstance(meta, dict):
            raise ConfigError("front matter must be a mapping (label: ..., tags: [...])", str(path), 2)
        unknown = set(meta) - {"label", "tags"}
        if unknown:
            raise ConfigError(f"unknown front matter key '{sorted(unknown)[0]}'", str(path), 2,
                              hint="known keys: label, tags")
        text = text[match.end():]
    tags = meta.get("tags") or []
    tags = [tags] if isinstance(tags, str) else tags
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"])
    return Note(str(meta.get("label") or ""), tuple(str(t) for t in tags), Markup(html), text.strip(), str(path))
