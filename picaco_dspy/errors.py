"""Exceptions raised by picaco-dspy.

Every error names the problem and, where there is one, the fix. They all derive from :class:`PicacoError`, so a caller
can catch the library's errors without catching unrelated ones.
"""

from __future__ import annotations


class PicacoError(Exception):
    """Base class of every error raised by picaco-dspy."""


class ValueSetError(PicacoError, ValueError):
    """A value composition is malformed: empty, duplicated names, missing definitions, bad weights, unknown name."""


class JudgeError(PicacoError, RuntimeError):
    """The judge could not produce a judgement (its LM failed, or its answer stayed unparseable after retries)."""


class ProgramError(PicacoError, ValueError):
    """The DSPy program cannot be aligned as given (no predictors, unknown predictor name, no text output)."""


class ConfigurationError(PicacoError, ValueError):
    """An argument of the optimiser, metric or a model is invalid."""


class ProviderRejected(PicacoError, RuntimeError):
    """An LM provider refused the credentials or the permission (401, 403); nothing about it was stored."""


class ProviderUnavailable(PicacoError, RuntimeError):
    """An LM provider kept failing with transient errors (timeouts, rate limits, 5xx) past the retry bound."""
