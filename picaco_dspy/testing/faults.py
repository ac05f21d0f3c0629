"""Providers that fail on purpose: a fault-injecting engine and an OpenAI-compatible HTTP server on loopback.

Both answer like the scripted world (:mod:`picaco_dspy.testing.scripted_world`) when they do answer, so a run through
them must end exactly where a run through the plain scripted engine ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from dspy.lm15 import Message, Response, TextPart

from picaco_dspy.runtime.retries import RetryPolicy
from picaco_dspy.testing.scripted_world import ScriptedEngine


class RateLimited(Exception):
    """Looks like a provider's 429: a status code and a ``Retry-After`` header."""

    status_code = 429

    def __init__(self, retry_after: str = "0") -> None:
        super().__init__("429 Too Many Requests")
        self.response = SimpleNamespace(status_code=429, headers={"Retry-After": retry_after})


class ServerError(Exception):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("503 Service Unavailable")


FAULTS = ("timeout", "rate_limit", "server_error", "malformed", "truncated")


class FaultyEngine(ScriptedEngine):
    """The scripted world, except that the first attempt of every ``every``-th distinct request fails.

    Faults cycle through ``faults``: ``timeout`` (TimeoutError), ``rate_limit`` (429 with Retry-After),
    ``server_error`` (503), ``malformed`` (an answer without DSPy's field markers), ``truncated`` (cut mid-answer,
    finish reason "length"). The first three are transient and must be retried; the last two are real answers that
    must be recorded as failures, never scored. ``dead_after`` makes every request after that many fail (the provider
    dies).
    """

    def __init__(self, *, every: int = 5, faults: tuple[str, ...] = FAULTS, dead_after: int | None = None) -> None:
        super().__init__()
        self.every, self.faults, self.dead_after = every, faults, dead_after
        self.attempted = 0
        self.injected: Counter[str] = Counter()
        self._seen: dict[str, int] = {}
        self._faulted: set[str] = set()
        self._fault_lock = threading.Lock()

    def complete(self, request) -> Response:
        key = _request_key(request)
        with self._fault_lock:
            self.attempted += 1
            if self.dead_after is not None and self.attempted > self.dead_after:
                self.injected["dead"] += 1
                raise ConnectionError("connection refused: the provider is down")
            index = self._seen.setdefault(key, len(self._seen))
            fault = None
            if index % self.every == self.every - 1 and key not in self._faulted:
                self._faulted.add(key)
                fault = self.faults[(index // self.every) % len(self.faults)]
                self.injected[fault] += 1
        if fault == "timeout":
            raise TimeoutError("simulated read timeout")
        if fault == "rate_limit":
            raise RateLimited("0")
        if fault == "server_error":
            raise ServerError()
        response = super().complete(request)
        if fault in ("malformed", "truncated"):
            text = response.message.parts[0].text
            broken = "I think the answer is" if fault == "malformed" else text[: max(1, len(text) // 3)]
            return Response(
                id=None,
                model="scripted",
                message=Message.assistant([TextPart(broken)]),
                finish_reason="length" if fault == "truncated" else "stop",
                usage=response.usage,
            )
        return response


def _request_key(request) -> str:
    system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
    text = f"{system}{request.messages[-1].text or ''}|{request.config.seed}|{request.config.temperature}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ServerLog:
    requests: int = 0
    answered: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    empty_answers: int = 0  # both kinds: an empty body, or a JSON body with no choices
    no_choices: int = 0  # a well-formed answer the client counts as a call
    refused: int = 0
    hung: int = 0


class MisbehavingServer:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 that answers like the scripted world, except:
    of every ``every`` distinct request bodies, the last ``len(faults)`` get one fault each on their first request
    (``"429"`` with ``Retry-After: 0``, ``"500"``, ``"empty"``: a 200 with an empty body, ``"no_choices"``: a 200 with
    ``choices: []``, ``"hang"``: the answer comes only after ``hang_seconds``, past any sane request timeout); after
    ``dead_after`` requests it closes every connection without answering (the provider dies);
    after ``refuse_after`` requests it answers 401 (the key was revoked) until :attr:`refusing` is set False."""

    def __init__(
        self,
        *,
        every: int = 4,
        dead_after: int | None = None,
        faults: tuple[str, ...] = ("429", "500"),
        refuse_after: int | None = None,
        hang_seconds: float = 5.0,
    ) -> None:
        self.engine = ScriptedEngine()
        self.hang_seconds = hang_seconds
        self.every, self.dead_after, self.faults, self.refuse_after = every, dead_after, faults, refuse_after
        self.refusing = refuse_after is not None
        self.log = ServerLog()
        self._seen: dict[str, int] = {}
        self._faulted: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload, headers = server.answer(body)
                if status is None:  # dead: drop the connection
                    self.close_connection = True
                    self.connection.close()
                    return
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MisbehavingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: bytes):
        request = json.loads(body)
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.log.requests += 1
            if self.dead_after is not None and self.log.requests > self.dead_after:
                return None, None, {}
            if self.refusing and self.refuse_after is not None and self.log.requests > self.refuse_after:
                self.log.refused += 1
                return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, {}
            index = self._seen.setdefault(key, len(self._seen))
            fault = None
            first_faulty = self.every - len(self.faults)
            if key not in self._faulted and index % self.every >= first_faulty:
                self._faulted.add(key)
                fault = self.faults[index % self.every - first_faulty]
            if fault in ("empty", "no_choices"):
                self.log.empty_answers += 1
                self.log.no_choices += fault == "no_choices"
                empty = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted", "choices": []}
                return 200, (None if fault == "empty" else empty), {}
            if fault == "429":
                self.log.rate_limited += 1
                return 429, {"error": {"message": "rate limited", "type": "rate_limit_error"}}, {"Retry-After": "0"}
            if fault == "500":
                self.log.server_errors += 1
                return 500, {"error": {"message": "internal error", "type": "server_error"}}, {}
            if fault == "hang":
                self.log.hung += 1
        if fault == "hang":
            time.sleep(self.hang_seconds)  # the client has given up by now; its retry is a new request
        messages = request["messages"]
        system = "".join(
            m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
            for m in messages
            if m["role"] == "system"
        )
        user = messages[-1]["content"]
        user = user if isinstance(user, str) else "".join(part.get("text", "") for part in user)
        fake = SimpleNamespace(
            system=system,
            messages=[SimpleNamespace(text=user)],
            config=SimpleNamespace(seed=request.get("seed"), temperature=request.get("temperature")),
        )
        response = self.engine.complete(fake)
        with self._lock:
            self.log.answered += 1
        text = response.message.parts[0].text
        return (
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": response.usage.input_tokens,
                    "completion_tokens": response.usage.output_tokens,
                    "total_tokens": response.usage.total_tokens,
                },
            },
            {},
        )


FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)  # retries without waiting seconds


def compile_through(lm, storage, **overrides):
    """Compile the scripted world's assistant through ``lm`` (a faulty engine or server) and return the
    :class:`~picaco_dspy.optimize.result.PICACOResult`; the judge retries a malformed answer once."""
    import dspy

    from picaco_dspy.programs.assistant import Assistant
    from picaco_dspy.teleprompter import PICACO
    from picaco_dspy.testing.scripted_world import SETTINGS, prompts, scripted_metric

    optimizer = PICACO(
        metric=scripted_metric(lm, judge_retries=1),
        prompt_model=lm,
        storage=storage,
        **{**SETTINGS, "retry_policy": FAST_RETRIES, **overrides},
    )
    with dspy.context(lm=lm):
        return optimizer.compile(Assistant(), trainset=prompts(4), valset=prompts(3, offset=100)).picaco_result
