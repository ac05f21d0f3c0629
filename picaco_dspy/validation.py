"""Argument checks shared by the public constructors (each failure names the argument and the accepted range)."""

from __future__ import annotations

from typing import Any

from picaco_dspy.errors import ConfigurationError


def require_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``; else raise :class:`ConfigurationError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {value!r}.")
    return value
