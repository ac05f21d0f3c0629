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
        if header:
            _check_sqlite_readable(path)
        return
    folder = nearest_existing_folder(path.parent if str(path.parent) else Path("."))
    if folder is None or not can_create_in(folder):
        raise ConfigurationError(f"storage {str(path)!r}: the folder {path.parent} cannot be created or written to.")


def nearest_existing_folder(path: Path) -> Path | None:
    """``path`` or its closest existing ancestor when that is a folder (None: a file is in the way)."""
    try:
        for candidate in [path, *path.parents]:
            if candidate.exists():
                return candidate if candidate.is_dir() else None
    except OSError:  # a name too long for the file system
        return None
    return None


def can_create_in(folder: Path) -> bool:
    """Whether this process can create entries in ``folder`` (tried with a temporary folder, removed at once:
    permission bits say yes to root on read-only file systems such as /proc)."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".picaco-check-"):
            return True
    except OSError:
        return False


def _check_sqlite_readable(path: Path) -> None:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"storage {str(path)!r} starts like an SQLite database but cannot be read ({exc}); name a new file."
        ) from exc


def check_storage_url(url: str) -> None:
    """Check that ``url`` parses and its dialect and driver are installed, without connecting.

    Raises:
        ConfigurationError: naming the problem and the fix.
    """
    try:
        parsed = sa.engine.make_url(url)
        _ = parsed.port  # a port that is not a number fails here, not at the first connection
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} is not usable: {exc}. Write it as dialect+driver://user@host/database, "
            "e.g. postgresql+psycopg://... or sqlite:///runs.db."
        ) from exc
    except ImportError as exc:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} needs the database driver {repr(exc.name) if exc.name else exc}: "
            "pip install 'picaco-dspy[postgres]' (psycopg) or the driver your URL names."
        ) from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        check_sqlite_file(Path(parsed.database))


def redact_url(url: str | None) -> str:
    """The URL with its password hidden (for logs and errors)."""
    if url is None:
        return "memory"
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"
