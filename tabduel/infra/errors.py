"""Errors that tabduel expects and reports in one line, without a traceback."""

from __future__ import annotations

import re
from typing import Iterator


class TabduelError(Exception):
    """An expected failure: bad input, bad settings, missing upstream output."""


class ConfigError(TabduelError):
    """A setting is unknown or has the wrong type or value."""


class DataError(TabduelError):
    """The input data is missing, unreadable or invalid."""


class SourceError(TabduelError):
    """The raw source file cannot be found, downloaded or verified."""


class CapacityError(TabduelError):
    """The work asked for would not fit the device's memory."""


class TrainingError(TabduelError):
    """A model could not be trained: its library refused, or its loss or predictions stopped being finite."""


class DivergedError(TrainingError):
    """A model's loss or predictions became NaN or infinite (too high a learning rate, most often)."""


class Interrupted(TabduelError):
    """The user stopped the run (Ctrl-C or SIGTERM); a fit in another thread stops at its next epoch or round."""


def one_line(exc: BaseException) -> str:
    """The error in one line, as the CLI prints it after 'tabduel: error: ' and as a failed MLflow run records it.

    A TabduelError is its message; anything else is 'TypeName: first line of its message'.
    """
    text = str(exc).strip()
    if not isinstance(exc, TabduelError):
        first = text.splitlines()[0].strip() if text else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines())


def exception_chain(exc: BaseException | None, limit: int = 10) -> Iterator[BaseException]:
    """exc, then what caused it, and so on (at most limit of them)."""
    while exc is not None and limit > 0:
        yield exc
        exc, limit = exc.__cause__ or exc.__context__, limit - 1


def status_in_chain(exc: BaseException | None, pattern: str) -> int | None:
    """The HTTP status that pattern's first non-empty group finds in exc's chain (first match wins), else None."""
    for e in exception_chain(exc):
        found = re.search(pattern, str(e))
        if found:
            return int(next(g for g in found.groups() if g))
    return None
