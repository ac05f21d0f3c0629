"""Failing providers: transient faults are retried with backoff and never scored; real failures are recorded and kept
out of every score; a provider that dies stops the run with a clear error and loses nothing already paid for."""

from __future__ import annotations

import dspy
import pytest

from picaco_dspy import RetryPolicy
from picaco_dspy.errors import ProviderUnavailable
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
