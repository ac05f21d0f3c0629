"""Failing providers: transient faults are retried with backoff and never scored; real failures are recorded and kept
out of every score; a provider that dies stops the run with a clear error and loses nothing already paid for."""

from __future__ import annotations

import time

import dspy
import pytest

from picaco_dspy import RetryPolicy
from picaco_dspy.errors import ProviderRejected, ProviderUnavailable
from picaco_dspy.runtime.retries import describe, is_transient, retry_after_seconds
from picaco_dspy.testing.faults import (
    FAST_RETRIES,
    FaultyEngine,
    MisbehavingServer,
    RateLimited,
    ServerError,
    compile_through,
)
from picaco_dspy.testing.scripted_world import ScriptedEngine

FAST = FAST_RETRIES


def fresh_cache(tmp_path, name):
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / name))
    dspy.cache.reset_memory_cache()


@pytest.fixture
def clean_run(tmp_path):
    fresh_cache(tmp_path, "clean")
    lm = dspy.LM("scripted/world", engine=ScriptedEngine(), temperature=1.0, max_tokens=512)
    result = compile_through(lm, str(tmp_path / "clean.db"))
    fresh_cache(tmp_path, "faulty")
    return result


def test_transient_faults_are_classified_and_retry_after_is_honoured():
    assert is_transient(TimeoutError()) and is_transient(ConnectionError())
    assert is_transient(RateLimited()) and is_transient(ServerError())
    wrapped = RuntimeError("LM call failed")
    wrapped.__cause__ = RateLimited("7")
    assert is_transient(wrapped) and retry_after_seconds(wrapped) == 7.0
    assert not is_transient(ValueError("400 bad request")) and retry_after_seconds(ValueError()) is None
    assert RetryPolicy(jitter=False, base_delay=1, max_delay=5).delay(3) == 4
    assert RetryPolicy(max_delay=2).delay(1, RateLimited("30")) == 2  # a provider's wait is capped too


def test_retry_logs_name_the_innermost_error_on_one_line():
    wrapped = RuntimeError("LM call failed")
    wrapped.__cause__ = ConnectionError("\n503 Service Unavailable\n\n  To fix:\n    - wait")
    assert describe(wrapped) == "ConnectionError: \n503 Service Unavailable\n\n  To fix:\n    - wait"
    assert describe(wrapped, brief=True) == "ConnectionError: 503 Service Unavailable"
    long = describe(TimeoutError("x" * 500), brief=True)
    assert long.endswith("x...") and len(long) == len("TimeoutError: ") + 200


def test_a_run_through_transient_and_malformed_faults_ends_where_a_clean_run_ends(tmp_path, clean_run):
    engine = FaultyEngine(every=4)
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    result = compile_through(lm, str(tmp_path / "faulty.db"))
    transient = engine.injected["timeout"] + engine.injected["rate_limit"] + engine.injected["server_error"]
    assert transient > 0 and engine.injected["malformed"] + engine.injected["truncated"] > 0
    # every transient fault was retried (and counted), none was recorded as a failure or scored
    assert sum(result.retries.values()) == transient
    # malformed or truncated answers are real failures of those requests: counted, kept out of every pool and score
    failed = sum(r.failed_rollouts for r in result.iterations) + sum(result.selection.failed.values())
    assert failed > 0
    # nothing lost: every answered call is in the ledger (the faults that raised were never answered, so not paid)
    answered = sum(engine.calls.values())
    assert sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer")) == answered
    assert engine.attempted == answered + transient
    assert result.finished and result.final_instruction


def test_a_provider_that_dies_mid_run_stops_it_cleanly_and_the_rerun_pays_for_nothing_twice(tmp_path, clean_run):
    storage = str(tmp_path / "dies.db")
    engine = FaultyEngine(every=10**9, dead_after=60)  # no other faults: the provider simply dies after 60 calls
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    with pytest.raises(ProviderUnavailable, match="failed 4 times with transient errors.*run the same command again"):
        compile_through(lm, storage)
    paid_before = sum(engine.calls.values())
    assert paid_before == 60
    # the provider is back; the same compile resumes from the storage
    fresh_cache(tmp_path, "back")
    back = ScriptedEngine()
    lm = dspy.LM("scripted/world", engine=back, temperature=1.0, max_tokens=512)
    resumed = compile_through(lm, storage)
    assert sum(back.calls.values()) + paid_before == sum(
        clean_run.usage[r]["calls"] for r in ("target", "judge", "proposer")
    )
    assert resumed.final_instruction == clean_run.final_instruction
    assert [r.J for r in resumed.iterations] == [r.J for r in clean_run.iterations]


def test_a_real_http_provider_that_rate_limits_and_errors_is_retried(tmp_path, clean_run):
    with MisbehavingServer(every=4) as server:
        lm = dspy.LM(
            "openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512, num_retries=0
        )
        result = compile_through(lm, str(tmp_path / "http.db"), num_threads=2)
    log = server.log
    assert log.rate_limited > 0 and log.server_errors > 0
    assert sum(result.retries.values()) == log.rate_limited + log.server_errors
    assert log.requests == log.answered + log.rate_limited + log.server_errors
    assert sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer")) == log.answered
    assert result.final_instruction == clean_run.final_instruction


def test_a_real_http_provider_that_dies_gives_a_clear_error(tmp_path):
    with MisbehavingServer(every=10**9, dead_after=10) as server:
        lm = dspy.LM(
            "openai/scripted",
            api_base=server.url,
            api_key="test",
            temperature=1.0,
            max_tokens=512,
            num_retries=0,
            timeout=5,
        )
        with pytest.raises(ProviderUnavailable, match="transient errors"):
            compile_through(lm, str(tmp_path / "dead.db"))
        assert server.log.answered == 10


def test_errors_raised_from_none_are_classified_by_what_was_raised():
    try:
        try:
            raise TimeoutError("the real cause, hidden on purpose")
        except TimeoutError:
            raise ValueError("400 bad request") from None
    except ValueError as exc:
        hidden = exc
    assert not is_transient(hidden) and describe(hidden) == "ValueError: 400 bad request"


def test_empty_answers_with_status_200_are_retried_not_stored(tmp_path, clean_run):
    with MisbehavingServer(every=5, faults=("empty", "no_choices")) as server:
        lm = dspy.LM(
            "openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512, num_retries=0
        )
        result = compile_through(lm, str(tmp_path / "empty.db"))
    # an empty answer fails a call (a judge's re-ask or DSPy's JSON fallback may meet another), which is retried
    assert server.log.empty_answers > 0 and sum(result.retries.values()) >= server.log.empty_answers // 2
    # the ledger counts every answer the client counted, the choice-less ones too (they may be billed)
    ledger = sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer"))
    assert ledger == server.log.answered + server.log.no_choices
    failed = sum(r.failed_rollouts for r in result.iterations) + sum(result.selection.failed.values())
    assert failed == 0 and result.final_instruction == clean_run.final_instruction
    assert [r.J for r in result.iterations] == [r.J for r in clean_run.iterations]


def test_a_hanging_provider_times_out_and_is_retried_without_changing_the_outcome(tmp_path, clean_run):
    with MisbehavingServer(every=12, faults=("hang",), hang_seconds=2.5) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        result = compile_through(lm, str(tmp_path / "hang.db"), num_threads=4, request_timeout=0.8)
    assert server.log.hung > 0 and sum(result.retries.values()) >= server.log.hung  # each hang timed out, was retried
    failed = sum(r.failed_rollouts for r in result.iterations) + sum(result.selection.failed.values())
    assert failed == 0 and result.final_instruction == clean_run.final_instruction


def test_a_revoked_key_stops_the_run_and_the_rerun_after_the_fix_resumes(tmp_path, clean_run):
    storage = str(tmp_path / "key.db")
    with MisbehavingServer(every=10**9, refuse_after=50) as server:
        lm = dspy.LM(
            "openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512, num_retries=0
        )
        with pytest.raises(ProviderRejected, match="check the API key.*run the same command again"):
            compile_through(lm, storage)
        assert server.log.refused >= 1 and server.log.answered == 50
        server.refusing = False  # the key is fixed
        fresh_cache(tmp_path, "fixed")
        resumed = compile_through(lm, storage)
    # nothing was stored for the refused calls, so nothing failed; the run ends where the clean run ends
    failed = sum(r.failed_rollouts for r in resumed.iterations) + sum(resumed.selection.failed.values())
    assert failed == 0 and resumed.final_instruction == clean_run.final_instruction
    assert server.log.answered == sum(clean_run.usage[r]["calls"] for r in ("target", "judge", "proposer"))


def test_one_retry_layer_and_a_request_timeout(tmp_path):
    """DSPy's own retries are off under PICACO's (one call: 1 + max_retries requests), and a hung provider fails
    after request_timeout, not litellm's 600 s."""
    with MisbehavingServer(every=10**9, dead_after=0) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        assert lm.num_retries == 3  # DSPy's default, left on by the user
        with pytest.raises(ProviderUnavailable):
            compile_through(lm, str(tmp_path / "layers.db"), num_threads=1)
    # each job that ran was attempted 1 + max_retries times (two run before the stop: a worker claims 2 per thread);
    # with DSPy's 3 retries under each attempt it would be 4 times as many
    assert server.log.requests in (1 + FAST.max_retries, 2 * (1 + FAST.max_retries))
    hung = _HangingServer()
    with hung:
        lm = dspy.LM("openai/scripted", api_base=hung.url, api_key="test", temperature=1.0, max_tokens=512)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="Timeout"):
            compile_through(lm, str(tmp_path / "hung.db"), num_threads=1, request_timeout=0.5)
        elapsed = time.monotonic() - started
    assert hung.requests in (1 + FAST.max_retries, 2 * (1 + FAST.max_retries)) and elapsed < 20


class _HangingServer:
    """Accepts requests and never answers."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                server.requests += 1
                time.sleep(5)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
