"""Whole-site link checker: every href, src, srcset and form action of every page, and every url()
of the stylesheets, names a file of the site, and every #fragment an id on the page it points at.

The site must open from disk and from any sub-path, so links are relative and name files
(index.html, never a bare folder). Pages are not handed whole to html.parser: the default gallery
holds ~480 MB of HTML (text pages are runs of token <span>s) and html.parser reads ~7 MB/s, so a
regex first picks out the tags that carry a link or an id (outside comments, scripts and styles)
and html.parser reads those.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRS = ("href", "src", "srcset", "action")
# comments and the contents of script/style elements, which may hold text that looks like tags
# (one leading "<" for both lets the regex engine skip ahead to candidates)
_OPAQUE = re.compile(r"<(?:!--.*?-->|((script|style)\b[^>]*>).*?(</\2\s*>))", re.S | re.I)
_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s"'>]+)"""
_ATTR = rf"""[^\s"'>/=]+(?:\s*=\s*{_VALUE})?"""
# a start tag with at least one of LINK_ATTRS or id among its attributes
_TAG = re.compile(rf"""<[a-z][^\s/>]*(?:\s+{_ATTR})*?\s+(?:{"|".join(LINK_ATTRS)}|id)\s*=\s*{_VALUE}"""
                  rf"""(?:\s+{_ATTR})*\s*/?>""", re.I)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3""")
_IGNORED_SCHEMES = {"http", "https", "mailto", "data"}


class _Tags(HTMLParser):
    """Collects the ids and the link targets of the tags fed to it."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "link" and attrs.get("rel") == "canonical":
            return  # the page's public address: absolute by design
        for name in LINK_ATTRS:
            value = attrs.get(name)
            if value is None:
                continue
            if name == "srcset":
                self.links.extend(c.split()[0] for c in value.split(",") if c.strip())
            else:
                self.links.append(value)

    handle_startendtag = handle_starttag

    def set_cdata_mode(self, *args, **kwargs):
        """Only tags are fed, so a <script> or <style> tag has no text after it to hold back."""


def _read_tags(path: Path) -> _Tags:
    """One page's ids and links."""
    text = _OPAQUE.sub(lambda m: "<" + m.group(1) + m.group(3) if m.group(1) else "", path.read_text())
    parser = _Tags()
    parser.feed("".join(m.group(0) for m in _TAG.finditer(text)))
    parser.close()
    return parser


@dataclass
class Report:
    """What the checker looked at and what it found wrong: (page, link, what is wrong) triples."""

    pages: int = 0
    links: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self, limit: int = 30) -> str:
        """The problems grouped by what is wrong, most common first, each with one link showing it."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for page, link, reason in self.problems:
            groups.setdefault(reason, []).append((page, link))
        ranked = sorted(groups.items(), key=lambda group: -len(group[1]))
        lines = [f"{reason}: {len(where):,} links, e.g. {where[0][1]} in {where[0][0]}" for reason, where in ranked[:limit]]
        if len(ranked) > limit:
            lines.append(f"and {len(ranked) - limit} more")
        return f"{len(self.problems):,} broken links in {self.pages:,} pages:\n" + "\n".join(lines)


def check_site(root: Path, site_url: str | None = None, skip: tuple[str, ...] = ("404.html",)) -> Report:
    """Checks every HTML page under root (but those named in skip) and every CSS file under assets/."""
    root = Path(root)
    files: set[str] = set()
    folders: set[str] = set()
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        folders.update(prefix + d for d in dirs)
        files.update(prefix + n for n in names)
    ids: dict[str, set[str]] = {}
    report = Report()
    fragments: list[tuple[str, str, str]] = []  # (page, link, target page): checked once every page is read

    def resolve(page: str, link: str) -> None:
        report.links += 1
        parts = urlsplit(link)
        if parts.scheme or parts.netloc:
            if site_url and link.startswith(site_url):
                report.problems.append((page, link, "absolute link to the site itself"))
            elif parts.scheme not in _IGNORED_SCHEMES:
                report.problems.append((page, link, f"unexpected scheme {parts.scheme}:"))
            return
        path = unquote(parts.path)
        if path.startswith("/"):
            report.problems.append((page, link, "root-absolute link (breaks file:// and sub-paths)"))
            return
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if path else page
        if target == ".." or target.startswith("../"):
            report.problems.append((page, link, "link out of the site"))
        elif target in folders or target == "." or path.endswith("/"):
            report.problems.append((page, link, f"folder {target} named instead of its index.html"))
        elif target not in files:
            report.problems.append((page, link, f"missing file {target}"))
        elif parts.fragment and target.endswith(".html"):
            fragments.append((page, link, target))

    for name in sorted(files):
        if name.endswith(".html"):
            tags = _read_tags(root / name)
            ids[name] = tags.ids
            if posixpath.basename(name) in skip:
                continue
            report.pages += 1
            for link in tags.links:
                resolve(name, link)
        elif name.endswith(".css") and name.startswith("assets/"):
            for m in _CSS_URL.finditer((root / name).read_text()):
                resolve(name, m.group(2) if m.group(2) is not None else m.group(4))
    for page, link, target in fragments:
        fragment = unquote(urlsplit(link).fragment)
        if fragment not in ids[target]:
            report.problems.append((page, link, f"no id {fragment!r} in {target}"))
    return report
