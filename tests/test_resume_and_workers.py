"""Checkpoint/resume after real kills, and several worker processes on one run (SQLite and PostgreSQL).

Each compile runs in its own process (``tests/scripted_run.py``) with an empty DSPy cache, so only the run storage can
spare a request; the scripted engine logs every request it answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.postgres import postgres_url

ROOT = Path(__file__).resolve().parents[1]


def scripted_run(tmp_path: Path, name: str, storage: str, *extra: str, wait: bool = True):
    log, out = tmp_path / f"{name}.calls", tmp_path / f"{name}.json"
    command = [
        sys.executable,
        "-m",
        "tests.support.scripted_run",
        "--storage",
        storage,
        "--log",
        str(log),
        "--out",
        str(out),
        *extra,
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": str(abs(hash(name)) % 1000)},
    )
    if not wait:
        return process, log, out
    output, _ = process.communicate(timeout=300)
    return process.returncode, output, log, out


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One run without interruption: its requests and result are what every other run must reproduce."""
    results = {}
    for auto in (None, "light"):
        tmp = tmp_path_factory.mktemp(f"baseline-{auto}")
        extra = ("--auto", auto) if auto else ()
        code, output, log, out = scripted_run(tmp, "baseline", f"sqlite:///{tmp / 'runs.db'}", *extra)
        assert code == 0, output
        results[auto] = (calls(log), json.loads(out.read_text()))
    return results


@pytest.mark.parametrize(
    ("auto", "fraction"),
    [(None, 0.1), (None, 0.5), (None, 0.9), ("light", 0.6)],
    ids=["noisy-pool", "mid-run", "final-selection", "optuna-steered"],
)
def test_a_killed_run_resumes_without_paying_twice_and_ends_on_the_same_program(
    tmp_path, uninterrupted, auto, fraction
):
    baseline_calls, baseline = uninterrupted[auto]
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    extra = ("--auto", auto) if auto else ()
    kill_after = int(len(baseline_calls) * fraction)
    code, output, killed_log, _ = scripted_run(tmp_path, "killed", storage, "--kill-after", str(kill_after), *extra)
    assert code == -9, f"the run was meant to be killed after {kill_after} calls:\n{output}"
    before_kill = calls(killed_log)
    assert len(before_kill) == kill_after
    code, output, resumed_log, out = scripted_run(tmp_path, "resumed", storage, *extra)
    assert code == 0, output
    after = calls(resumed_log)
    resumed = json.loads(out.read_text())
    # nothing paid twice: every request of both processes is distinct, and together they are the uninterrupted run's
    assert not set(before_kill) & set(after)
    assert Counter(before_kill + after) == Counter(baseline_calls)
    assert resumed["reused_results"] > 0
    # the same final program and the same trajectory as the run that was never interrupted
    assert resumed["final_instruction"] == baseline["final_instruction"]
    assert resumed["J"] == baseline["J"] and resumed["settings"] == baseline["settings"]
    assert resumed["selection"] == baseline["selection"]
    assert resumed["usage"] == baseline["usage"]  # the ledger counts what the run paid, once


def run_two_workers(tmp_path: Path, storage: str, baseline_calls: list[str], baseline: dict) -> None:
    barrier = tmp_path / "barrier"
    workers = [
        scripted_run(
            tmp_path, f"worker{k}", storage, "--delay", "0.01", "--barrier", str(barrier), "--workers", "2", wait=False
        )
        for k in range(2)
    ]
    outputs = []
    for process, _, _ in workers:
        output, _ = process.communicate(timeout=300)
        outputs.append(output)
        assert process.returncode == 0, output
    logs = [calls(log) for _, log, _ in workers]
    results = [json.loads(out.read_text()) for _, _, out in workers]
    assert all(logs), f"both workers must have done some of the work: {[len(log) for log in logs]}"
    # never the same request twice (judgements included), and together exactly the single-process run's requests
    assert Counter(logs[0] + logs[1]) == Counter(baseline_calls)
    judged = [c for log in logs for c in log if c.startswith("judge ")]
    assert len(judged) == len(set(judged))
    for result in results:  # any worker produces the final program
        assert result["final_instruction"] == baseline["final_instruction"]
        assert result["J"] == baseline["J"] and result["usage"] == baseline["usage"]
    assert sum(r["executed_jobs"] for r in results) >= len(baseline_calls) // 2


def test_two_workers_share_one_sqlite_run(tmp_path, uninterrupted):
    baseline_calls, baseline = uninterrupted[None]
    run_two_workers(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}", baseline_calls, baseline)


def test_two_workers_share_one_postgresql_run(tmp_path, uninterrupted):
    url = postgres_url()  # skips (or, in CI, fails) with the reason when no server can be reached or started
    database = f"picaco_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    storage = _fresh_database(url, database)
    baseline_calls, baseline = uninterrupted[None]
    run_two_workers(tmp_path, storage, baseline_calls, baseline)


def _fresh_database(url: str, name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False))
