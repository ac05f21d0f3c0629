"""Argument checks shared by the public constructors (each failure names the argument and the accepted range)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from picaco_dspy.errors import ConfigurationError


def require_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``; else raise :class:`ConfigurationError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {value!r}.")
    return value


def read_text_file(path: str | Path, *, kind: str, error: type[Exception], max_bytes: int | None = None) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped), raising ``error`` with a clear message when it is missing,
    larger than ``max_bytes`` or not UTF-8. ``kind`` names the file in messages (e.g. "Prompt file")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{kind} {str(path)!r} does not exist.")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise error(f"{kind} {str(path)!r} is too large ({size:,} bytes; the limit is {max_bytes:,}).")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{kind} {str(path)!r} is not UTF-8 text ({exc.reason}); save it as UTF-8.") from exc


def excerpt(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages about input of any size."""
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 5] + "...'" + f" ({len(str(value)):,} chars)"
