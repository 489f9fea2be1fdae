"""A page's content as one self-contained piece of HTML, for a notebook's output (galleria.Gallery).

It is the page itself: the theme's template block rendered from the same view, with the theme's
stylesheet nested under the view's own class (so that it neither restyles the notebook nor is
restyled by it, light or dark as the notebook is), every image inlined, each once (an image many
tiles crop is one CSS variable), links to pages that do not exist in a notebook made inert, and
the theme's script told to draw this view only.
"""
from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path

from markupsafe import escape
from PIL import Image

from galleria.site import views as V
from galleria.site.theme import Theme

VIEW_CLASS = "galleria-inline"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
# The notebooks that say their theme is dark (JupyterLab and Notebook 7, VS Code), and those that say it is light.
DARK_HOST = ':is(body[data-jp-theme-light="false"], body.vscode-dark, ' \
            'body.vscode-high-contrast:not(.vscode-high-contrast-light))'
LIGHT_HOST = 'body:not([data-jp-theme-light="true"]):not(.vscode-light):not(.vscode-high-contrast-light)'
# What the page's <body> gives the site, given to the view; links to pages a notebook lacks as text; a
# tile's image as a cropped background.
VIEW_RULES = """& { background: var(--bg); color: var(--fg); font-family: var(--font); font-size: 15px;
  line-height: 1.45; font-variant-numeric: tabular-nums; padding: 12px 16px; border-radius: var(--radius);
  text-align: left; }
& a:not([href]) { color: inherit; text-decoration: none; }
& .tile i.src { position: absolute; display: block; width: 100%; left: 0; top: 0; background-size: 100% 100%; }
"""
TILE_IMAGE = re.compile(r'<img src="([^"]*)" alt=""(?: loading="lazy")?(?: style="([^"]*)")?>')
OTHER_IMAGE = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]*)(")')
PAGE_LINK = re.compile(r'\shref="(?!#)(?![A-Za-z][A-Za-z0-9+.-]*:)[^"]*"')


def inline_view(theme: Theme, site, page: V.Page, files: Mapping[str, Path]) -> str:
    """``page``'s content block as a notebook shows it; ``files`` maps the site paths its images
    have (as a built site would hold them) to the files holding them."""
    context = {**V.common(site, page), **page.context}
    html = theme.render_block(page.template, "content", **context)
    html, variables = _inline_images(html, page.folder, files)
    html = PAGE_LINK.sub("", html)
    assets = theme.asset_files()
    css = scoped_css(assets["galleria.css"].read_text(encoding="utf-8"))
    script = assets["galleria.js"].read_text(encoding="utf-8").replace("</", "<\\/")
    style = f' style="{";".join(variables)}"' if variables else ""
    crumbs = " › ".join(str(escape(title)) for title, _ in page.crumbs)  # where the page would be in a site
    return (f'<div class="{VIEW_CLASS}"{style}><style>{css}</style>'
            f'<p class="muted crumbs">{crumbs}</p>{html}'
            f'<script data-view>{script}</script></div>')


def scoped_css(css: str) -> str:
    """The theme's stylesheet nested under the view's class: its :root colours on the view, dark
    where the notebook's theme is (or, where the notebook says nothing, where the system's is)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"^(?:html|body) \{[^}]*\}\s*", "", css, flags=re.M)  # the page's own; VIEW_RULES instead
    css = css.replace(":root {", "& {")
    css = css.replace('html[data-theme="dark"] {', f"{DARK_HOST} & {{")
    css = css.replace('html:not([data-theme="light"]) {', f"{LIGHT_HOST} & {{")
    return f".{VIEW_CLASS} {{\n{css}\n{VIEW_RULES}}}"


def _inline_images(html: str, folder: str, files: Mapping[str, Path]) -> tuple[str, list[str]]:
    """Every image of ``html`` (a page in ``folder``) inlined: a tile's source image (the same
    image under many tiles) as a CSS variable on the view, set once; any other as a data url."""
    names: dict[Path, str] = {}
    sizes: dict[Path, tuple[int, int]] = {}
    variables: list[str] = []

    def source(relative: str) -> Path | None:
        return files.get(posixpath.normpath(posixpath.join(folder, relative)))

    def tile(match: re.Match) -> str:
        path = source(match.group(1))
        if path is None:
            return match.group(0)
        if path not in names:
            names[path] = f"--g{len(names)}"
            variables.append(f"{names[path]}:url({data_url(path)})")
            with Image.open(path) as image:
                sizes[path] = image.size
        width, height = sizes[path]
        placed = f";{match.group(2)}" if match.group(2) else ""
        return f'<i class="src" style="background-image:var({names[path]});aspect-ratio:{width}/{height}{placed}"></i>'

    def other(match: re.Match) -> str:
        path = source(match.group(2))
        return match.group(0) if path is None else f"{match.group(1)}{data_url(path)}{match.group(3)}"

    html = TILE_IMAGE.sub(tile, html)
    return OTHER_IMAGE.sub(other, html), variables


def data_url(path: Path) -> str:
    return f"data:{MIME.get(path.suffix.lower(), 'application/octet-stream')};base64," \
           f"{base64.b64encode(path.read_bytes()).decode('ascii')}"
