"""Optuna storages: a journal file or a database URL, opened for the study (search/study.py) and for the workers
that report trials to its pruner (search/pruning.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabduel.infra.errors import ConfigError, TabduelError


def open_storage(url: str) -> Any:
    """An Optuna storage: a journal file for a plain path (or .log), else an RDB URL (sqlite, postgresql...)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" not in url:
        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise ConfigError(f"search.storage = {_redact(url)!r}: not a journal file path, sqlite:///, postgresql:// or "
                          "mysql://")
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except ImportError as exc:  # e.g. no psycopg2 for postgresql://
        raise ConfigError(f"search.storage = {_redact(url)!r}: its database driver is not installed ({exc})") from None
    except Exception as exc:  # unreachable server, bad credentials
        raise TabduelError(f"search.storage = {_redact(url)}: cannot open it: {exc}") from None


def _redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL SQLAlchemy reads: show only its scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else url
    if parsed.host and "@" in parsed.host:  # an unescaped @ in the password: SQLAlchemy splits at the first @
        parsed = parsed.set(host=parsed.host.rsplit("@", 1)[1])
    return parsed.render_as_string(hide_password=True)
