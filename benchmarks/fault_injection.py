"""Fault injection: calls attempted, retried, failed and lost when a provider times out, rate-limits, errors,
answers malformed or truncated text, or drops connections.

Two runs of the scripted world (picaco_dspy/testing/scripted_world.py), each with an empty DSPy cache and no stored
run: one through
a fault-injecting engine, one through a misbehaving OpenAI-compatible HTTP server on loopback (litellm with its own
retries off, so every retry is PICACO's). Run from the repository root:

    python -m benchmarks.fault_injection
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import contextlib  # noqa: E402
import time  # noqa: E402

import dspy  # noqa: E402

from picaco_dspy.errors import ProviderRejected, ProviderUnavailable  # noqa: E402
from picaco_dspy.testing.faults import FaultyEngine, MisbehavingServer, compile_through  # noqa: E402

ROLES = ("target", "judge", "proposer")


def fresh_cache() -> None:
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=tempfile.mkdtemp())
    dspy.cache.reset_memory_cache()


def main() -> None:
    fresh_cache()
    engine = FaultyEngine(every=4)
    result = compile_through(dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512), None)
    answered = sum(engine.calls.values())
    ledger = sum(result.usage[r]["calls"] for r in ROLES)
    failed = (
        sum(r.failed_rollouts for r in result.iterations)
        + sum(result.selection.failed.values())
        + result.noisy_pool.get("failed", 0)
    )
    print(
        f"fault-injecting engine: attempted {engine.attempted}, injected {dict(engine.injected)}, "
        f"retried {sum(result.retries.values())} {result.retries}, answered {answered}, in the ledger {ledger}, "
        f"lost {answered - ledger}, recorded failures {failed}"
    )

    fresh_cache()
    with MisbehavingServer(every=4) as server:
        lm = dspy.LM(
            "openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512, num_retries=0
        )
        result = compile_through(lm, None, num_threads=2)
    log = server.log
    ledger = sum(result.usage[r]["calls"] for r in ROLES)
    print(
        f"misbehaving HTTP server: requests {log.requests}, answered 429 {log.rate_limited}, answered 500 "
        f"{log.server_errors}, retried {sum(result.retries.values())}, answered {log.answered}, in the ledger "
        f"{ledger}, lost {log.answered - ledger}"
    )

    fresh_cache()
    clean = compile_through(dspy.LM("scripted/world", engine=FaultyEngine(every=10**9), temperature=1.0), None)
    fresh_cache()
    with MisbehavingServer(every=5, faults=("empty", "no_choices")) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        result = compile_through(lm, None)
    log = server.log
    print(
        f"HTTP 200 without a usable answer: requests {log.requests}, "
        f"empty bodies {log.empty_answers - log.no_choices}, "
        f"no choices {log.no_choices}, retried {sum(result.retries.values())}, recorded failures "
        f"{_failures(result)}, same final program as a clean run: {result.final_instruction == clean.final_instruction}"
    )

    fresh_cache()
    with tempfile.TemporaryDirectory() as folder, MisbehavingServer(every=10**9, refuse_after=50) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        try:
            compile_through(lm, f"{folder}/key.db")
            stopped = "no"
        except ProviderRejected:
            stopped = "yes (ProviderRejected)"
        paid_before = server.log.answered
        server.refusing = False
        result = compile_through(lm, f"{folder}/key.db")
    print(
        f"key revoked after 50 requests: run stopped {stopped}; refused requests stored 0; rerun after the fix paid "
        f"{server.log.answered - paid_before} more; total answered {server.log.answered} vs a clean run's "
        f"{sum(clean.usage[r]['calls'] for r in ROLES)}; recorded failures {_failures(result)}; same final program: "
        f"{result.final_instruction == clean.final_instruction}"
    )

    fresh_cache()
    with MisbehavingServer(every=10**9, dead_after=0) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        started = time.monotonic()
        with contextlib.suppress(ProviderUnavailable):
            compile_through(lm, None, num_threads=1)
    print(
        f"provider gone (DSPy's num_retries=3 left on the LM): {server.log.requests} requests for the first 2 jobs "
        f"(1 + RetryPolicy.max_retries = 4 attempts each; DSPy's own retries off), {time.monotonic() - started:.1f} s"
    )

    fresh_cache()
    with MisbehavingServer(every=12, faults=("hang",), hang_seconds=3.0) as server:
        lm = dspy.LM("openai/scripted", api_base=server.url, api_key="test", temperature=1.0, max_tokens=512)
        started = time.monotonic()
        result = compile_through(lm, None, num_threads=4, request_timeout=1.0)
    print(
        f"hanging provider (1 in 12 requests answers after 3 s; request_timeout=1 s): requests {server.log.requests}, "
        f"hung {server.log.hung}, retried {sum(result.retries.values())}, recorded failures {_failures(result)}, "
        f"same final program as a clean run: {result.final_instruction == clean.final_instruction}, "
        f"{time.monotonic() - started:.1f} s"
    )


def _failures(result) -> int:
    return (
        sum(r.failed_rollouts for r in result.iterations)
        + sum(result.selection.failed.values())
        + result.noisy_pool.get("failed", 0)
    )


if __name__ == "__main__":
    main()
