"""Where a run's storage lives: the ``storage=`` argument turned into an SQLAlchemy URL, checked before any model
runs, and shown with its password hidden."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from picaco_dspy.errors import ConfigurationError

DEFAULT_STORAGE = "default"


def default_storage_url() -> str:
    """``$PICACO_STORAGE``, else an SQLite file ``runs.db`` in ``$PICACO_CACHE_DIR`` (``~/.cache/picaco-dspy``)."""
    if os.environ.get("PICACO_STORAGE"):
        return os.environ["PICACO_STORAGE"]
    root = Path(os.environ.get("PICACO_CACHE_DIR") or Path.home() / ".cache" / "picaco-dspy")
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'runs.db'}"


def resolve_storage_url(storage: str | None) -> str | None:
    """Turn the ``storage=`` argument into an SQLAlchemy URL (None keeps the run in memory).

    Accepts ``"default"``, an SQLAlchemy URL (``sqlite:///runs.db``, ``postgresql+psycopg://user@host/db``) or a
    plain path, taken as an SQLite file.
    """
    if storage is None:
        return None
    if not isinstance(storage, str) or not storage.strip():
        raise ConfigurationError(
            f"storage must be None, 'default', an SQLAlchemy URL or an SQLite file path, got {storage!r}."
        )
    if storage == DEFAULT_STORAGE:
        return default_storage_url()
    if "://" in storage:
        check_storage_url(storage)
        return storage
    path = Path(storage).expanduser()
    if path.parent and not path.parent.exists():
        raise ConfigurationError(f"storage {storage!r}: the folder {path.parent} does not exist; create it first.")
    check_sqlite_file(path)
    return f"sqlite:///{path.resolve()}"


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(path: Path) -> None:
    """Refuse a storage path that is a folder, an existing file that is not an SQLite database, or one in a folder
    this process cannot write to, before any model runs."""
    if path.is_dir():
        raise ConfigurationError(
            f"storage {str(path)!r} is a folder; name a database file in it, e.g. {path / 'runs.db'}."
        )
    if path.exists():
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise ConfigurationError(
                f"storage {str(path)!r} exists and is not an SQLite database; name a new file or an existing run "
                "storage (it would not be overwritten)."
            )
    elif not os.access(path.parent if str(path.parent) else Path("."), os.W_OK):
        raise ConfigurationError(f"storage {str(path)!r}: the folder {path.parent} is not writable.")


def check_storage_url(url: str) -> None:
    """Check that ``url`` parses and its dialect and driver are installed, without connecting.

    Raises:
        ConfigurationError: naming the problem and the fix.
    """
    try:
        dialect = sa.engine.make_url(url).get_dialect()
        dialect.import_dbapi()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} is not usable: {exc}. Write it as dialect+driver://user@host/database, "
            "e.g. postgresql+psycopg://... or sqlite:///runs.db."
        ) from exc
    except ImportError as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} needs the database driver {repr(exc.name) if exc.name else exc}: "
            "pip install 'picaco-dspy[postgres]' (psycopg) or the driver your URL names."
        ) from exc


def redact_url(url: str | None) -> str:
    """The URL with its password hidden (for logs and errors)."""
    if url is None:
        return "memory"
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
