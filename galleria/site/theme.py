"""Jinja templates and static assets of a site.

A theme directory holds templates at its top level (``base.html``, ``unit.html``,
``partials/*.html`` ...) and static files under ``assets/``. The built-in theme lives in
``themes/default``; a site may name a ``custom_dir`` whose files override the built-in
ones of the same name, one file at a time (like MkDocs' ``custom_dir``). A custom
template may also extend the built-in template it replaces under the ``default/``
prefix, e.g. ``{% extends "default/unit.html" %}``, and override only some blocks.
"""
from __future__ import annotations

import contextlib
import math
import pathlib
import re
import shutil
from typing import Any, Iterator

import jinja2
from markupsafe import Markup

from galleria.errors import BuildError

__all__ = ["Theme", "builtin_theme_dir", "format_num", "format_pct", "format_count"]

#: Prefix under which the built-in templates stay reachable from a custom template.
BUILTIN_PREFIX = "default"


def builtin_theme_dir() -> pathlib.Path:
    """The built-in ``themes/default`` directory.

    Looked up first inside the package (``galleria/themes/default``, as laid out in an
    installed wheel), then at the repository root (a source checkout or an editable install).
    """
    here = pathlib.Path(__file__).resolve()
    candidates = [
        here.parents[1] / "themes" / "default",  # galleria/themes/default
        here.parents[2] / "themes" / "default",  # <repo>/themes/default
    ]
    for candidate in candidates:
        if (candidate / "base.html").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise RuntimeError(
        f"galleria's built-in theme was not found (looked for base.html in: {looked}); "
        "the installation is incomplete: reinstall galleria, or run it from a source checkout"
    )


# ----------------------------------------------------------------------------- filters


def format_num(value: Any) -> str:
    """A number with 3 significant digits: 7.91, 0.423, 1.2e-05, 1,235; "—" for None.

    Numbers come back as Markup: they need no escaping, and a page shows hundreds of them."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return Markup("NaN")
    if math.isinf(x):
        return Markup("∞" if x > 0 else "-∞")
    if x == 0:
        return Markup("0")
    if 1e3 <= abs(x) < 1e6:
        return Markup(f"{x:,.0f}")
    return Markup(f"{x:.3g}")


def format_pct(value: Any) -> str:
    """A fraction as a percentage with one decimal: 0.123 -> "12.3%"; "—" for None."""
    if value is None:
        return "—"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "—"
    return Markup(f"{x * 100:.1f}%")


def format_count(value: Any) -> str:
    """An integer with thousands separators: 1234567 -> "1,234,567"; "—" for None."""
    if value is None:
        return "—"
    try:
        return Markup(f"{int(value):,}")
    except (TypeError, ValueError, OverflowError):
        return str(value)


def clamp01(value: Any) -> float:
    """A float clamped to [0, 1] (0 for None/NaN); for bar widths."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(x):
        return 0.0
    return min(1.0, max(0.0, x))


# ------------------------------------------------------------------------------- theme


@contextlib.contextmanager
def _template_errors(template: str):
    """A broken template as a one-line BuildError naming its file and line."""
    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        raise BuildError(f"{exc.filename or exc.name}:{exc.lineno}: template error: {exc.message}") from None
    except jinja2.TemplateError as exc:  # an undefined name, a failed include, ...
        raise BuildError(f"template {template}: {type(exc).__name__}: {exc}") from None


class _Unindented(jinja2.FileSystemLoader):
    """The built-in templates without the indentation of their lines: it shows their structure to
    whoever edits them and nothing to a visitor, and cost every page ~190 bytes (9 MB over 50,000
    unit pages). None of them holds preformatted text of its own; a custom theme's are read as written."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return _INDENT.sub("\n", source), filename, uptodate


_INDENT = re.compile(r"\n[ \t]+")


class _Environment(jinja2.Environment):
    """Jinja's environment, with ``x.key`` on a dict looked up as a key first.

    Jinja tries an attribute before an item, so each ``unit.stats.max`` on a dict context raised
    and caught an AttributeError: a quarter of a page's render time on a site of thousands."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


class Theme:
    """Jinja templates and static assets; a site's theme dir overrides any built-in file (like MkDocs custom_dir)."""

    def __init__(self, custom_dir: pathlib.Path | None = None):
        self.builtin_dir = builtin_theme_dir()
        self.custom_dir = pathlib.Path(custom_dir) if custom_dir is not None else None
        if self.custom_dir is not None and not self.custom_dir.is_dir():
            raise FileNotFoundError(f"theme custom_dir {self.custom_dir} is not a directory")
        #: theme directories, highest priority first
        self.dirs: list[pathlib.Path] = [d for d in (self.custom_dir, self.builtin_dir) if d is not None]
        loader = jinja2.ChoiceLoader(
            [
                *([jinja2.FileSystemLoader(str(self.custom_dir))] if self.custom_dir is not None else []),
                _Unindented(str(self.builtin_dir)),
                jinja2.PrefixLoader({BUILTIN_PREFIX: _Unindented(str(self.builtin_dir))}),
            ]
        )
        self.env = _Environment(
            loader=loader,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # a build renders each template thousands of times; serve makes a new Theme on an edit
        )
        self.env.filters.update(
            num=format_num,
            pct=format_pct,
            count=format_count,
            clamp01=clamp01,
        )

    def render(self, template: str, **context: Any) -> str:
        """Render one template (e.g. ``"unit.html"``) with the page's context; a broken template
        (a custom theme's, usually) is a one-line error naming its file and line."""
        with _template_errors(template):
            return self.env.get_template(template).render(**context)

    def render_block(self, template: str, block: str, **context: Any) -> str:
        """One block of a template (a page's ``content``, for a notebook's view of it), its
        template's own macros defined first, as a whole render would."""
        with _template_errors(template):
            found = self.env.get_template(template)
            page = found.new_context(context)
            for _ in found.root_render_func(page):  # the top level: its macros and imports
                pass
            return "".join(found.blocks[block](page))

    def stream(self, template: str, **context: Any) -> Iterator[str]:
        """The page render() makes, in pieces as they are made: for pages that grow with a layer's
        width (a grid of 20,000 units), so that the whole text is never held at once."""
        with _template_errors(template):
            yield from self.env.get_template(template).generate(**context)

    def asset_files(self) -> dict[str, pathlib.Path]:
        """Every asset, as path relative to ``assets/`` -> source file; custom files win."""
        found: dict[str, pathlib.Path] = {}
        for theme_dir in reversed(self.dirs):  # built-in first, custom over it
            assets = theme_dir / "assets"
            if not assets.is_dir():
                continue
            for path in sorted(assets.rglob("*")):
                rel = path.relative_to(assets)
                if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                    found[rel.as_posix()] = path
        return found

    def vendored(self, name: str) -> pathlib.Path:
        """A vendored package's folder (``vendor/<name>``), the custom theme's first."""
        return next((d / "vendor" / name for d in self.dirs if (d / "vendor" / name).is_dir()),
                    self.builtin_dir / "vendor" / name)

    def copy_assets(self, dest: pathlib.Path) -> list[pathlib.Path]:
        """Copy the built-in ``assets/*`` to ``dest/assets/``, then the custom dir's over them.

        Returns the paths written (each once, sorted).
        """
        out_dir = pathlib.Path(dest) / "assets"
        written = []
        for rel, source in sorted(self.asset_files().items()):
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
        return written
