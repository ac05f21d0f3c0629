"""A minimal client for OpenAI-compatible HTTP endpoints, for the requests litellm does not pass through intact.

litellm and DSPy cover chat and completion calls, but not the legacy ``/v1/completions`` fields that return the
log-probabilities of the *prompt* (``echo`` with ``logprobs``); this module posts such a request with the standard
library and maps failures onto the library's errors, after a bounded number of retries for transient ones.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from picaco_dspy.errors import ProviderRejected, ProviderUnavailable

logger = logging.getLogger(__name__)

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerRefused(ProviderUnavailable):
    """The server answered a request with a client error (4xx other than 401/403): it does not support it.

    Attributes:
        status: The HTTP status.
        body: The start of the error body the server sent.
    """

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def post_json(
    api_base: str,
    path: str,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    timeout: float = 120.0,
    retries: int = 2,
) -> dict[str, Any]:
    """POST ``body`` as JSON to ``api_base + path`` and return the decoded JSON answer.

    Raises:
        ProviderRejected: 401 or 403 (credentials or permission).
        ServerRefused: any other 4xx (the request is not supported as sent); carries the error body.
        ProviderUnavailable: transient failures (connection errors, timeouts, 429, 5xx) past ``retries`` retries,
            or an answer that is not JSON.
    """
    url = api_base.rstrip("/") + path
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key or 'unused'}"}
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2**attempt, 8.0))
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:500]
            if exc.code in (401, 403):
                raise ProviderRejected(f"{url} refused the credentials ({exc.code}): {detail}") from None
            if exc.code not in _TRANSIENT_STATUS:
                raise ServerRefused(f"{url} answered {exc.code}: {detail}", exc.code, detail) from None
            last_error = f"{exc.code}: {detail}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        else:
            try:
                answer = json.loads(raw)
            except ValueError:
                raise ProviderUnavailable(f"{url} answered something that is not JSON: {raw[:200]!r}") from None
            if not isinstance(answer, dict):
                raise ProviderUnavailable(f"{url} answered JSON that is not an object: {raw[:200]!r}")
            return answer
        logger.warning("%s failed (%s); attempt %d of %d", url, last_error, attempt + 1, retries + 1)
    raise ProviderUnavailable(f"{url} kept failing after {retries + 1} attempts: {last_error}")
