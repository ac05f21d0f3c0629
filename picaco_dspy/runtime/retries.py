"""Transient provider failures: which errors are worth retrying, and how long to wait before the next attempt.

A timeout, a connection error, a 429 rate limit or a 5xx answer says nothing about the request: the same request may
succeed a moment later, so it is retried with exponential backoff (honouring ``Retry-After``) and never recorded as a
failed rollout or judgement. A ``200`` whose body is empty, not JSON, or has no choices or no content is a provider
hiccup of the same kind (:func:`is_empty_answer`): it is retried too, but when it persists it is recorded as a failure
(an in-process model can legitimately answer nothing). A refused credential or permission (401, 403) is fatal
(:func:`is_fatal`): no retry helps and nothing is recorded, so the same command resumes once the key is fixed.
Anything else (an unparseable answer, a 400, a content filter) is a real failure of that request and is recorded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from picaco_dspy.errors import ConfigurationError

_TRANSIENT_NAMES = {
    "LMRateLimitError",  # DSPy 3.4's structured errors
    "LMServerError",
    "LMTimeoutError",
    "LMTransportError",
    "RateLimitError",
    "Timeout",
    "APITimeoutError",
    "TimeoutException",
    "ReadTimeout",
    "ConnectTimeout",
    "APIConnectionError",
    "ConnectError",
    "ServiceUnavailableError",
    "InternalServerError",
    "BadGatewayError",
    "RemoteProtocolError",
}


_FATAL_NAMES = {
    "LMAuthError",  # DSPy 3.4
    "AuthError",  # lm15
    "AuthenticationError",  # litellm / openai
    "PermissionDeniedError",
}
_EMPTY_ANSWER_MARKERS = ("empty or null response", "no choices", "empty response")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient provider failures are retried.

    Attributes:
        max_retries: Retries of one request after its first attempt; past them the run stops with
            :class:`~picaco_dspy.errors.ProviderUnavailable` (everything paid so far stays stored).
        base_delay: Seconds before the first retry; doubled on every further one.
        max_delay: Upper bound of one wait (also caps a provider's ``Retry-After``).
        jitter: Spread waits randomly over [delay/2, delay] so that parallel requests do not retry in lockstep.
    """

    max_retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(f"RetryPolicy.max_retries must be an integer >= 0, got {self.max_retries!r}.")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}.")

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): ``Retry-After`` if the provider sent one."""
        asked = retry_after_seconds(error) if error is not None else None
        if asked is not None:
            return min(asked, self.max_delay)
        delay = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return random.uniform(delay / 2, delay) if self.jitter else delay


_ATTEMPT: ContextVar[int] = ContextVar("picaco_retry_attempt", default=0)


@contextmanager
def attempt_number(attempt: int) -> Iterator[None]:
    """Mark the calls made inside as attempt ``attempt`` (0: the first) of one job."""
    token = _ATTEMPT.set(attempt)
    try:
        yield
    finally:
        _ATTEMPT.reset(token)


def is_retry() -> bool:
    """Whether the current call is a retry: it must reach the provider, not DSPy's cache of the failed answer (a 200
    without choices is cached like any answer)."""
    return _ATTEMPT.get() > 0


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is a timeout, connection error, 429 or 5xx."""
    for exc in _chain(error):
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        if type(exc).__name__ in _TRANSIENT_NAMES:
            return True
        status = _status_code(exc)
        if status is not None and (status == 429 or 500 <= status < 600):
            return True
    return False


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is a refused credential or permission (401, 403)."""
    return any(type(exc).__name__ in _FATAL_NAMES or _status_code(exc) in (401, 403) for exc in _chain(error))


def is_empty_answer(error: BaseException) -> bool:
    """Whether ``error`` comes from a successful HTTP answer without a usable body: empty, not JSON, no choices or no
    content."""
    for exc in _chain(error):
        if isinstance(exc, json.JSONDecodeError):
            return True
        if any(marker in str(exc).lower() for marker in _EMPTY_ANSWER_MARKERS):
            return True
    return False


def retry_after_seconds(error: BaseException) -> float | None:
    """The provider's ``Retry-After`` (seconds or an HTTP date) found on ``error`` or its causes, if any."""
    for exc in _chain(error):
        asked = getattr(exc, "retry_after", None)  # DSPy's LMError carries it already parsed
        if isinstance(asked, (int, float)) and not isinstance(asked, bool):
            return max(0.0, float(asked))
        headers = _headers(exc)
        value = headers.get("retry-after") if headers else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            pass
        try:
            from datetime import datetime

            return max(0.0, (parsedate_to_datetime(str(value)) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError, OverflowError):
            continue
    return None


def describe(error: BaseException, *, brief: bool = False) -> str:
    """``Type: message`` of the most specific error in the chain; ``brief`` keeps the message's first line only (at
    most 200 characters), for one-line logs."""
    innermost = list(_chain(error))[-1]
    message = str(innermost)
    if brief:
        first = next((line.strip() for line in message.splitlines() if line.strip()), "")
        message = first if len(first) <= 200 else first[:197] + "..."
    return f"{type(innermost).__name__}: {message}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # ``raise ... from None`` hides the context: the error chosen to be shown is the one to classify
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _status_code(exc: BaseException) -> int | None:
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _headers(exc: BaseException) -> dict[str, Any]:
    for source in (getattr(exc, "response", None), exc):
        headers = getattr(source, "headers", None) or getattr(source, "litellm_response_headers", None)
        if headers:
            try:
                return {str(k).lower(): v for k, v in dict(headers).items()}
            except (TypeError, ValueError):
                continue
    return {}
