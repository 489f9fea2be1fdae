"""``galleria build``: config → sources → extract → visualize → site, into a fresh folder.

The site is written to a temporary folder beside the output and moved into place only when
every stage succeeded, so a failed build leaves the previous site (or nothing) untouched.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from galleria.cache import Cache
from galleria.config import load_config
from galleria.errors import BuildError, MissingExtra
from galleria.fingerprint import site_fingerprint
from galleria.records import BuildReport

MARKER = ".galleria"  # written into every output and cache folder galleria owns


def build(config_file: str | Path = "site.yaml", output_dir: str | Path | None = None, clean: bool = False,
          strict: bool = False, quiet: bool = False, site_url: str | None = None) -> BuildReport:
    report = BuildReport()
    started = time.perf_counter()
    config = load_config(config_file, site_url)
    out = Path(output_dir).resolve() if output_dir else config.site.output_dir
    check_ours(out, "output")
    fingerprint = site_fingerprint(config)
    previous = None if clean else _previous(out)
    if previous is not None and previous[0] == fingerprint:
        report.warnings.extend(previous[1])
        if strict and report.warnings:
            raise BuildError(f"{len(report.warnings)} warning(s) and --strict: {report.warnings[0]}")
        report.up_to_date, report.output = True, str(out)
        report.stage_seconds["total"] = time.perf_counter() - started
        return report
    return _build(config, out, fingerprint, report, started, clean, strict, quiet)


def _build(config, out: Path, fingerprint: str, report: BuildReport, started: float, clean: bool, strict: bool,
           quiet: bool) -> BuildReport:
    from galleria.distributed import ranks, waited

    if ranks().first:  # under torchrun, what there is one of is rank 0's to touch: the others wait
        for stale in out.parent.glob(f".{out.name}.old-*") if out.parent.is_dir() else ():
            _remove_later(stale)
        for unfinished in out.parent.glob(f".{out.name}.tmp-*") if out.parent.is_dir() else ():
            if _abandoned(unfinished):
                _remove_later(unfinished)
        cache_dir = config.site.cache_dir
        if clean and cache_dir.exists():
            check_ours(cache_dir, "cache")
            shutil.rmtree(cache_dir)
    ranks().wait()
    gathered = gather(config, report, quiet)
    if strict and report.warnings:
        raise BuildError(f"{len(report.warnings)} warning(s) and --strict: {report.warnings[0]}")
    write_site(config, gathered, out, fingerprint, report, quiet, strict)
    ranks().wait()
    report.stage_seconds["total"] = time.perf_counter() - started
    if ranks().world > 1:
        report.ranks = ranks().gather({"stage_seconds": report.stage_seconds, "waited": waited()})
    return report


@dataclass
class Gathered:
    """What the site stage is written from: every model's records, the notes and the theme.

    ``galleria serve`` keeps one in memory, so a note or template edit re-renders pages
    without loading a model or reading the activation cache again.
    """

    builds: list
    notes: dict
    theme: object
    cache: Cache
    skipped_models: list[str]
    search: list | None = None  # what the search index held after the last full write (serve re-renders)


def gather(config, report: BuildReport, quiet: bool = False, objects: dict | None = None) -> Gathered:
    """config → sources → extract → visualize: every stage before the pages. ``objects``: models
    given in memory (galleria.Gallery), by model id."""
    cache_dir = config.site.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / MARKER).write_text("galleria cache: safe to delete\n")
    cache = Cache(cache_dir)
    show = not quiet
    with stage(report, "load"):  # torch and timm imports included: seconds on a small machine
        from galleria.extract.attribution import attribute
        from galleria.extract.effects import layer_built_from, layer_effects
        from galleria.extract.health import layer_health
        from galleria.extract.labels import model_labels, shown_labels
        from galleria.extract.architecture import inspect_model
        from galleria.extract.related import layer_related
        from galleria.probe.export import ProbeLeftOut, model_probe
        from galleria.extract.run import extract, pick_device
        from galleria.records import ModelBuild
        from galleria.site.content import load_notes
        from galleria.site.theme import Theme
        from galleria.sources.images import discover
        from galleria.sources.models import load_model
        from galleria.sources.text import TokenLoader, discover_text
        from galleria.visualize.examples import unit_thumbs
        from galleria.visualize.featureviz import model_feature_visualizations
        from galleria.visualize.receptive import model_receptive_fields
        from galleria.visualize.sources import source_images
        from galleria.visualize.tokens import CONTEXT
        import numpy as np
        theme = Theme(config.site.theme_dir)
        notes = load_notes(config.site.content_dir)
        loaded, skipped_models = [], []
        for model_cfg in config.models:
            try:
                model = load_model(model_cfg, config.root, (objects or {}).get(model_cfg.id))
            except MissingExtra as exc:
                skipped_models.append(model_cfg.id)
                _warn(report, str(exc), show)
                continue
            loaded.append(model)
        if not loaded:
            raise BuildError("no model left to build: " + "; ".join(report.warnings))
        image_inputs: dict[tuple[str, ...], object] = {}  # models reading the same sets share them
        prepared = []
        for model in loaded:
            sets = tuple(s for s in config.inputs if s.kind == model.config.kind
                         and (model.config.inputs is None or s.id in model.config.inputs))
            if model.tokenizer is None:
                key = tuple(s.id for s in sets)
                inputs = image_inputs[key] = image_inputs.get(key) or discover(sets)
                layout = inspect_model(model, config.shown)
            else:
                inputs = discover_text(sets, model.tokenizer)
                sample = TokenLoader(inputs.text).batch([inputs.items[0]])[0]
                layout = inspect_model(model, config.shown, sample, inputs.text.window)
            prepared.append((model, layout, inputs))
    report.warnings.extend(config.warnings)
    seen_skips: set[tuple[str, str]] = set()
    _warn_skips(report, seen_skips, [inputs for _, _, inputs in prepared], show)
    report.models = len(prepared)
    report.layers = sum(len(layout.layers) for _, layout, _ in prepared)
    report.units = sum(len(l.units) for _, layout, _ in prepared for l in layout.layers)

    builds, used = [], {}
    for model, layout, inputs in prepared:
        with stage(report, "extract"), _bar(show, len(inputs.items), f"{model.config.id}: activations",
                                             inputs.text and "window" or "input") as bar:
            acts = extract(model, layout, inputs, config, cache, bar)
        inputs = inputs.without(acts.unreadable)  # files that failed to decode only when the model read them
        _warn_skips(report, seen_skips, [inputs], show)
        used[inputs.key] = max(used.get(inputs.key, 0), len(inputs.usable))
        attribution, featureviz, receptive, sources = None, {}, {}, {}
        if inputs.text is None:
            model_id = model.config.id
            with stage(report, "images"), _bar(show, None, f"{model_id}: images", "image") as bar:
                with _gradient_view(report, show, model_id, "receptive fields (tiles show whole inputs)"):
                    receptive = model_receptive_fields(model, list(layout.layers), cache)
                sources, stored = source_images(inputs, model.config.preprocessing, cache, bar)
            report.images += stored
            with stage(report, "attribution"), _bar(show, None, f"{model_id}: attribution", "input") as bar:
                if config.attribution.inputs:
                    bar.reset(total=min(config.attribution.inputs, len(inputs.usable)))
                with _gradient_view(report, show, model_id, "class effects or 'built from'"):
                    attribution = attribute(model, layout, inputs, acts, config, cache, bar)
            with stage(report, "featureviz"), _bar(show, None, f"{model_id}: feature visualization",
                                                    "image") as bar:
                with _gradient_view(report, show, model_id, "feature visualizations"):
                    featureviz = model_feature_visualizations(model, layout, inputs, cache,
                                                              pick_device(config.extract.device), bar)
        health, thumbs, maxima, minima = {}, {}, {}, {}
        rows = [item.index for item in inputs.usable] if inputs.unreadable else slice(None)
        with stage(report, "health"):
            for index, layer in enumerate(layout.layers):  # a run of one layer's units in memory at a time
                stats, shown = [], []
                for span in acts.spans(index):
                    data = acts.layer(index, maps=inputs.text is None, units=span)
                    stats += [summary.stats for summary in data.summaries]
                    if inputs.text is None:
                        shown += unit_thumbs(data, receptive.get(layer.name), layer.layout, inputs,
                                             config.examples.heatmap)
                    del data
                health[layer.name] = layer_health(layer.units, stats, acts.peaks(index)[rows])
                maxima[layer.name] = np.array([s.max for s in stats])
                minima[layer.name] = np.array([s.min for s in stats])
                if inputs.text is None:
                    thumbs[layer.name] = tuple(shown)
        with stage(report, "labels"):
            auto_labels = model_labels(acts, layout, inputs, model.labels, cache, receptive,
                                       model.config.preprocessing)
        report.labelled += sum(1 for units in auto_labels.values() for found in units if shown_labels(found))
        effects, built_from, related = {}, {}, {}
        by_name = {l.name: l for l in layout.layers}
        units_shown = {l.name: l.units for l in layout.layers}
        for layer in layout.layers:
            related[layer.name] = layer_related(model.module, layer, health[layer.name].correlated, units_shown)
            found = attribution.layers[layer.name] if attribution else None
            effects[layer.name] = layer_effects(model.module, layout, layer, found.classes if found else None,
                                                attribution.sample if attribution else 0)
            built_from[layer.name] = None
            if found is not None and found.sources is not None:
                built_from[layer.name] = layer_built_from(found.sources, by_name[found.source],
                                                          min(attribution.examples, attribution.sample))
        context = (config.examples.context or CONTEXT[inputs.text.kind]) if inputs.text is not None else None
        probe, left_out = None, ""
        if model.config.probe.enabled:
            with stage(report, "probe"):
                try:
                    probe = model_probe(model, layout, inputs, model.config.probe, cache)
                    report.probes.append(f"{model.config.id} {probe.carried.stat().st_size / 1e6:.3g} MB "
                                         f"({probe.precision}, within {probe.fidelity * 100:.2g}% of PyTorch)")
                except ProbeLeftOut as exc:
                    left_out = f"model '{model.config.id}' has no live probe in the page: {exc}"
                    report.notices.append(left_out)
        model.module = None  # nothing after this runs the model: its weights need not outlive the stages that do
        builds.append(ModelBuild(model, layout, acts, inputs, health, effects, built_from, related, featureviz, thumbs,
                                 maxima, receptive, sources, context, minima, probe, left_out, auto_labels))
    if report.probes:
        runtime = theme.vendored("onnxruntime-web") / "runtime.js"
        report.probes.append(f"and their runtime {runtime.stat().st_size / 1e6:.1f} MB")
    report.inputs_used = sum(used.values())
    report.inputs_skipped = len(seen_skips)
    check_notes(notes, builds, report, show, skipped_models)
    return Gathered(builds, notes, theme, cache, skipped_models)


def _warn_skips(report: BuildReport, seen: set[tuple[str, str]], input_sets: list, show: bool) -> None:
    """Warn once about each input file a set skipped, however many models read the set."""
    for inputs in input_sets:
        for path, reason in inputs.skipped:
            if (path, reason) not in seen:
                seen.add((path, reason))
                _warn(report, f"skipped input {path}: {reason}", show)


def write_site(config, gathered: Gathered, out: Path, fingerprint: str, report: BuildReport,
               quiet: bool = False, strict: bool = False, track_reads: bool = False) -> dict[str, frozenset[str]]:
    """The site stage, into a temporary folder that replaces ``out`` only once it is complete
    (and, under ``strict``, fits GitHub Pages' limits).

    With ``track_reads``, returns the note keys each page read (see SiteWriter.reads)."""
    from galleria.distributed import ranks
    from galleria.forking import collect_rarely, release_heap
    from galleria.site.footprint import footprint
    from galleria.site.writer import SiteWriter

    release_heap()  # what gathering freed, returned before page writers fork
    with stage(report, "pages"):
        tmp = None
        if ranks().first:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{_owner()}-", dir=out.parent))
        folder = Path(ranks().gather(str(tmp))[0])  # under torchrun every rank writes pages into rank 0's
        if not ranks().first:
            with collect_rarely():
                SiteWriter(config, gathered.theme, gathered.notes, folder, gathered.cache).write_share(gathered.builds)
            return {}
        try:
            with _bar(not quiet, None, "pages", "page") as bar:
                writer = SiteWriter(config, gathered.theme, gathered.notes, tmp, gathered.cache, bar,
                                    track_reads=track_reads)
                bar.reset(total=writer.page_count(gathered.builds))
                with collect_rarely():
                    writer.write(gathered.builds)
            gathered.search = writer.search
            size = footprint(tmp)
            report.site_bytes, report.site_files = size.bytes, size.files
            for problem in size.over_limits():
                _warn(report, problem, not quiet)
                if strict:
                    raise BuildError(f"--strict: {problem}")
            (tmp / MARKER).write_text("\n".join([MARKER_TITLE, f"fingerprint: {fingerprint}",
                                                  *[f"warning: {w}" for w in report.warnings]]) + "\n")
            swap_in(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    report.pages = len(writer.pages)
    report.search_bytes = writer.search_bytes
    report.output = str(out)
    if not config.site.url:
        report.notices.append("no site.url in site.yaml, so no canonical links, sitemap or link preview "
                              "images (previews need absolute urls); set it to the address the gallery is "
                              "published at, e.g. https://you.github.io/gallery/")
    return writer.reads or {}


MARKER_TITLE = "built by galleria: 'galleria build' may replace this folder"


def _previous(out: Path) -> tuple[str, list[str]] | None:
    """The fingerprint and warnings of the build that made ``out``, if galleria made it."""
    try:
        lines = (out / MARKER).read_text().splitlines()
    except OSError:
        return None
    fingerprint = next((l.split(": ", 1)[1] for l in lines if l.startswith("fingerprint: ")), None)
    return (fingerprint, [l.split(": ", 1)[1] for l in lines if l.startswith("warning: ")]) if fingerprint else None


def check_ours(path: Path, what: str) -> None:
    """Refuse to replace or delete a folder galleria did not create."""
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MARKER).exists())):
        raise BuildError(f"{path} exists and was not created by galleria; refusing to replace it "
                         f"(choose another {what} folder, or move it away)")


def swap_in(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` where ``out`` is, the old one deleted in the background."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "site")
        os.replace(new, out)
        _remove_later(old)
    else:
        os.replace(new, out)


def _owner() -> str:
    """This host and process, as a new site's temporary folder is named: ``host.pid``."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())}.{os.getpid()}"


def _abandoned(folder: Path) -> bool:
    """Whether a temporary site folder (``.<site>.tmp-<host>.<pid>-<random>``) was left by a build
    that is gone (killed, or out of memory): made on this host by a process that no longer runs.
    One of another host, or of a live process, may be a build under way: it is left alone."""
    owner = folder.name.rsplit("-", 2)
    host, _, pid = owner[-2].rpartition(".") if len(owner) == 3 else ("", "", "")
    if host != _owner().rpartition(".")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # someone else's process
        return False
    return False


def _remove_later(path: Path) -> None:
    """Delete a replaced site in a detached process: unlinking tens of thousands of files takes
    seconds that the user should not wait for. Leftovers of a killed run are removed next time."""
    try:
        subprocess.Popen(["rm", "-rf", "--", str(path)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no rm (e.g. Windows): delete in place
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _gradient_view(report: BuildReport, show: bool, model_id: str, view: str):
    """Run a view that needs gradients. A model with an operator that has no derivative (autograd
    says so) is built without the view: one warning naming the model, the view and the reason."""
    try:
        yield
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "derivative for" not in text and "does not require grad" not in text:
            raise
        _warn(report, f"model '{model_id}': no {view}, as its gradients cannot be taken "
                      f"({type(exc).__name__}: {text})", show)


def _warn(report: BuildReport, message: str, show: bool) -> None:
    report.warnings.append(message)
    if show:
        print(f"warning: {message}", file=sys.stderr)


def check_notes(notes, builds: list, report: BuildReport, show: bool, skipped_models: list[str]) -> None:
    """Warn about notes that belong to no page: a typo in a path, or a unit no longer shown."""
    from galleria.site import structure as S

    pages = {""}
    for b in builds:
        cfg = b.model.config
        pages.add(S.model_dir(cfg.id))
        for layer in b.layout.layers:
            pages.add(S.layer_dir(cfg.id, layer.name))
            pages.update(S.unit_dir(cfg.id, layer.name, u) for u in layer.units)
    for key, note in notes.items():
        if key not in pages and key.split("/")[0] not in skipped_models:
            _warn(report, f"note {note.file} belongs to no page ('{key}/' is not built)", show)


@contextmanager
def stage(report: BuildReport, name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        report.stage_seconds[name] = report.stage_seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def _bar(show: bool, total: int | None, desc: str, unit: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show or None, leave=False, file=sys.stderr,
               dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def summary(report: BuildReport) -> str:
    """The closing lines of a build, MkDocs style: what was built, how large, and where the time went."""
    from galleria.site.footprint import megabytes

    if report.up_to_date:
        note = f" ({len(report.warnings)} warning(s) from that build)" if report.warnings else ""
        return (f"{report.output} is up to date: nothing changed since it was built{note} "
                f"({report.stage_seconds['total']:.1f} s; --clean rebuilds from scratch)")
    stages = " · ".join(f"{k} {v:.1f} s" for k, v in report.stage_seconds.items() if k != "total")
    skipped = f" ({report.inputs_skipped} skipped)" if report.inputs_skipped else ""
    lines = [
        f"Built {report.output} in {report.stage_seconds.get('total', 0):.1f} s: "
        f"{report.models} model(s), {report.layers} layers, {report.units:,} units, "
        f"{report.inputs_used:,} inputs{skipped}, {report.pages:,} pages, {report.images:,} images drawn",
        f"  {stages}",
    ]
    if report.ranks:  # how evenly a torchrun build kept its ranks busy
        lines.append(f"  {len(report.ranks)} ranks, waiting for each other: "
                     + ", ".join(f"rank {r} {each['waited']:.1f} s" for r, each in enumerate(report.ranks)))
    if report.site_files:
        lines.append(f"  site {megabytes(report.site_bytes)} in {report.site_files:,} files"
                     + (f" (search index {report.search_bytes / 1024:,.0f} KB)" if report.search_bytes else "")
                     + "; GitHub Pages publishes up to 1 GB, 100 MB a file")
    if report.units:
        from galleria.extract.labels import SHOWN

        lines.append(f"  automatic labels: {report.labelled:,} of {report.units:,} units score {SHOWN} or more")
    if report.probes:
        lines.append("  live probe in the page: " + ", ".join(report.probes))
    if report.warnings:
        lines.append(f"  {len(report.warnings)} warning(s)")
    lines.extend(f"  note: {notice}" for notice in report.notices)
    return "\n".join(lines)
