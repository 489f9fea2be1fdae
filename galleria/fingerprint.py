"""A cheap fingerprint of everything a build reads, to skip a build when nothing changed.

Like make, it looks at file sizes and modification times rather than contents, and it needs
no torch import, so an up-to-date site is confirmed in well under a second. Anything it
misses is caught by ``galleria build --clean``, which discards every cached result.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from galleria import __version__
from galleria.cache import content_key
from galleria.config import Config, find_spec_beside, package_dir
from galleria.sources.images import matching_files

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow", "jinja2", "markdown", "transformers", "tokenizers")


def site_fingerprint(config: Config) -> str:
    parts: list[object] = [__version__, config.file.read_bytes(), config.site.url, _versions()]  # url: --site-url
    parts.append(_tree(Path(__file__).parent, "*.py"))  # galleria's own code
    from galleria.site.theme import builtin_theme_dir

    for folder in (builtin_theme_dir(), config.site.theme_dir, config.site.content_dir):
        parts.append(_tree(folder) if folder else None)
    for model in config.models:
        parts.append(_model_files(model.source, config.root))
        if model.weights is not None:
            parts.append(_stat(model.weights.path) if model.weights.path else
                         (model.weights.package, model.weights.file, _package_file(model.weights.package,
                                                                                    model.weights.file)))
        if isinstance(model.labels, str) and not model.labels.startswith("torchvision:"):
            parts.append(_stat(Path(model.labels)))
        if model.tokenizer not in (None, "model"):
            parts.append(_stat(Path(model.tokenizer.removeprefix("chars:"))))
        if model.pretrained is not None:
            parts.append(_tree(model.pretrained))
        for spec in model.layers:
            if spec.dictionary is not None:
                parts.append(_tree(spec.dictionary.path) if spec.dictionary.path.is_dir() else
                             _stat(spec.dictionary.path))
    for inputs in config.inputs:
        if inputs.python is not None:  # the module holding the text, not the folder beside site.yaml
            parts.append(_model_files(inputs.python, config.root))
        else:  # exactly the files the build reads
            parts.append([_stat(p) for p in matching_files(inputs)])
    return content_key(*parts)


def _versions() -> list[tuple[str, str | None]]:
    found = []
    for name in PACKAGES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, None))
    return found


def _stat(path: Path) -> tuple[str, int, int] | tuple[str, None]:
    try:
        info = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), info.st_size, info.st_mtime_ns)


def _tree(folder: Path, pattern: str = "*") -> list:
    if not folder.is_dir():
        return []
    return [_stat(p) for p in sorted(folder.rglob(pattern)) if p.is_file() and "__pycache__" not in p.parts]


def _package_file(package: str, file: str):
    folder = package_dir(package)
    return None if folder is None else _stat(folder / file)


def _model_files(source: str, root: Path) -> list:
    """The user's model code: its package, or every Python file beside its module."""
    kind, _, name = source.partition(":")
    if kind in ("torchvision", "timm"):
        return [kind]
    if kind == "torchscript":
        return [_stat(root / name)]
    folder = package_dir(kind.split(".")[0], root)
    if folder is not None:  # a package, namespace packages included
        return _tree(folder, "*.py")
    spec = find_spec_beside(kind.split(".")[0], root)
    if spec is None or spec.origin is None:
        return [kind]
    origin = Path(spec.origin)
    return [_stat(p) for p in sorted(origin.parent.glob("*.py"))] if origin.parent == root else [_stat(origin)]
