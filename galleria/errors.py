"""Errors the command line turns into one-line messages and exit codes, never tracebacks."""
from __future__ import annotations

from contextlib import contextmanager


class GalleriaError(Exception):
    """A failure the user can fix; the message is shown as is."""

    exit_code = 1


class ConfigError(GalleriaError):
    """site.yaml is wrong: exit code 2, like a usage error."""

    exit_code = 2

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 key: str | None = None, hint: str | None = None):
        self.file, self.line, self.key, self.hint = file, line, key, hint
        where = file or "site.yaml"
        if line is not None:
            where += f":{line}"
        text = f"{where}: {key + ': ' if key else ''}{message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class UsageError(GalleriaError):
    """A command line argument is wrong (an address, a folder): exit code 2, like argparse."""

    exit_code = 2


class BuildError(GalleriaError):
    """The build could not finish: missing weights, empty input set, shape mismatch."""

    exit_code = 1


class MissingExtra(BuildError):
    """An optional part (e.g. ``galleria[text]``) is not installed: the build skips what needs it."""


class ModelError(BuildError):
    """The user's own model raised: the message names the model, the layer and the stage."""


_OWN_CODE = __file__.rsplit("/", 1)[0] + "/"  # galleria's package folder


@contextmanager
def in_user_model(model_id: str, module, stage: str, hint: str = ""):
    """Turn an exception raised inside the user's model into one line naming the model, the layer
    where it was raised and the build stage; galleria's own failures (hooks included) pass through.

    The layer is the innermost module of the model whose ``forward`` is on the traceback. A frame
    of galleria's own code met before any such module means the fault is ours, not the model's.
    """
    try:
        yield
    except GalleriaError:
        raise
    except Exception as exc:
        where = _raising_module(exc, module)
        if where is None:
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        layer = f"layer '{where}'" if where else "its top-level forward"
        raise ModelError(f"model '{model_id}' raised in {layer} during {stage}: {type(exc).__name__}"
                         + (f": {detail}" if detail else "") + (f" ({hint})" if hint else "")) from exc


def _raising_module(exc: BaseException, module) -> str | None:
    import traceback

    names = {id(m): name for name, m in module.named_modules()}
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in names:
            return names[id(owner)]
        filename = frame.f_code.co_filename
        if filename.startswith(_OWN_CODE) and "/sources/" not in filename:
            return None
    return None
