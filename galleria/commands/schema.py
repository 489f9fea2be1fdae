"""``galleria schema``: site.yaml's JSON Schema, for editors and validators."""
from __future__ import annotations

from pathlib import Path

from galleria.errors import UsageError
from galleria.schema import schema_text


def schema(output: str | None) -> str:
    """The schema, or with ``output`` a line saying where it was written."""
    if output is None:
        return schema_text()
    try:
        Path(output).write_text(schema_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    return f"Wrote the JSON Schema of site.yaml to {output}\n"
