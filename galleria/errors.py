"""Errors the command line turns into one-line messages and exit codes, never tracebacks."""
from __future__ import annotations


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
