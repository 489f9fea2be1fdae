"""``galleria export``: every unit's record, one file per layer, for pandas, DuckDB and friends.

JSON Lines holds each unit's ``unit.json`` as it is, one per line. Parquet (with pyarrow) keeps
each field a typed column where its values share a type across the layer's units (stats as a
struct, tags as a list); a field whose values do not (an example's ``heat``, a list of width,
height and packed levels) is stored as JSON text, and the file's metadata names those columns
(``galleria.json_columns``), so reading them back is one ``json.loads`` each.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from galleria.built import BuiltSite
from galleria.commands.build import MARKER, build, check_ours, summary, swap_in
from galleria.config import load_config
from galleria.errors import UsageError
from galleria.site import structure as S

FORMATS = ("jsonl", "parquet")
JSON_COLUMNS = b"galleria.json_columns"


def export(config_file: str | Path = "site.yaml", fmt: str = "jsonl", output: str | Path | None = None,
           build_first: bool = True, quiet: bool = False) -> Path:
    """Build (unless ``build_first`` is false), then write ``<output>/<model>/<layer>.<fmt>`` for every
    layer; returns the folder. It replaces a folder it wrote before, never another one."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: use jsonl or parquet")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError("--format parquet needs pyarrow: pip install pyarrow (or use --format jsonl)")
    config = load_config(config_file)
    if build_first:
        report = build(config_file, quiet=quiet)
        if not quiet:
            print(summary(report))
    out = Path(output) if output else config.root / "export"
    check_ours(out, "export")
    site = BuiltSite(config.site.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for layer in site.layers():
            target = tmp / layer.model / f"{S.slug(layer.name)}.{fmt}"
            target.parent.mkdir(parents=True, exist_ok=True)
            (_write_jsonl if fmt == "jsonl" else _write_parquet)(site, layer, target)
        (tmp / MARKER).write_text("written by galleria export: 'galleria export' may replace this folder\n")
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_jsonl(site: BuiltSite, layer, target: Path) -> None:
    with target.open("w", encoding="utf-8") as out:
        for path in site.unit_files(layer):
            out.write(path.read_text(encoding="utf-8").strip() + "\n")


def _write_parquet(site: BuiltSite, layer, target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(path.read_text(encoding="utf-8")) for path in site.unit_files(layer)]
    names = list(dict.fromkeys(key for record in records for key in record))
    columns, as_json = {}, []
    for name in names:
        values = [record.get(name) for record in records]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # values of more than one type: kept as JSON text
            columns[name] = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
                                     pa.string())
            as_json.append(name)
    table = pa.table(columns).replace_schema_metadata({JSON_COLUMNS: json.dumps(as_json).encode()})
    pq.write_table(table, target)


def read_parquet(path: str | Path) -> list[dict]:
    """A layer's records from an exported Parquet file, JSON columns parsed: the unit.json dicts."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    as_json = json.loads((table.schema.metadata or {}).get(JSON_COLUMNS, b"[]"))
    rows = table.to_pylist()
    for row in rows:
        for name in as_json:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows
