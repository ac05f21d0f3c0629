"""The run store: first writer wins, claims are exclusive until their worker goes silent, identities are checked."""

from __future__ import annotations

import time

import pytest

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.runtime.storage_url import resolve_storage_url
from picaco_dspy.runtime.store import RunStore
from picaco_dspy.runtime.usage import UsageMeter
from picaco_dspy.runtime.work_board import JobFailed, WorkBoard, job_key


@pytest.fixture
def store(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}", heartbeat_seconds=0.1, stale_after_seconds=0.5)
    yield store
    store.close()


def test_a_run_name_is_bound_to_one_configuration(store):
    assert store.open_run("r", "fingerprint-a", {"argv": ["compile"]}) is False
    assert store.open_run("r", "fingerprint-a") is True  # the same configuration joins / resumes
    with pytest.raises(ConfigurationError, match="different configuration"):
        store.open_run("r", "fingerprint-b")
    assert store.run_spec("r") == {"argv": ["compile"]}
    with pytest.raises(ConfigurationError, match="No run named 'nope'"):
        store.run_spec("nope")


def test_the_first_result_stored_wins_and_the_ledger_sums_per_role(store):
    store.open_run("r", "f")
    assert store.put(
        "r",
        "judgement",
        "k",
        {"v": 1},
        worker="w1",
        role="judge",
        usage={"calls": 2, "input_tokens": 10, "output_tokens": 3, "cost_usd": 0.5},
    )
    assert not store.put("r", "judgement", "k", {"v": 2}, worker="w2", role="judge", usage={"calls": 7})
    store.put("r", "rollout", "k", "text", worker="w1", role="target", usage={"calls": 1, "input_tokens": 4})
    assert store.get_many("r", "judgement", ["k", "missing"])["k"].value == {"v": 1}
    ledger = store.ledger("r")
    assert ledger["judge"] == {"calls": 2, "input_tokens": 10, "output_tokens": 3, "cost_usd": 0.5}
    assert ledger["target"]["calls"] == 1 and set(ledger) == {"judge", "target"}


def test_claims_are_exclusive_until_the_holder_goes_silent(store):
    store.open_run("r", "f")
    alive = store.join("r")
    other = store.join("r")
    keys = ["a", "b", "c"]
    assert store.claim("r", "rollout", keys, alive, limit=2) == ["a", "b"]
    assert store.claim("r", "rollout", keys, other, limit=5) == ["c"]  # a and b are held by a live worker
    store.put("r", "rollout", "c", "done", worker=other)
    assert store.claim("r", "rollout", ["c"], alive, limit=1) == []  # finished work is never claimed again
    # the holder dies without a word: its heartbeat stops, and after stale_after_seconds its jobs are taken over
    with store._beat_lock:
        store._beating.discard(("r", alive))
    time.sleep(0.8)
    assert store.claim("r", "rollout", keys, other, limit=5) == ["a", "b"]


def test_leaving_releases_unfinished_claims_at_once(store):
    store.open_run("r", "f")
    first, second = store.join("r"), store.join("r")
    assert store.claim("r", "judgement", ["x"], first, limit=1) == ["x"]
    store.leave("r", first)
    assert store.claim("r", "judgement", ["x"], second, limit=1) == ["x"]


def test_the_board_stores_failures_once_and_never_reruns_a_job(store):
    store.open_run("r", "f")
    board = WorkBoard(store, "r", meter=UsageMeter(), num_threads=2, progress=False)
    ran = []

    def execute(payload):
        ran.append(payload)
        return ValueError("provider down") if payload == "bad" else payload.upper()

    jobs = {job_key(p): p for p in ("a", "b", "bad")}
    first = board.run("rollout", jobs, execute)
    again = board.run("rollout", jobs, execute)
    assert sorted(ran) == ["a", "b", "bad"]  # the second call was served from the store
    assert first[job_key("a")] == again[job_key("a")] == "A"
    assert isinstance(again[job_key("bad")], JobFailed) and "provider down" in str(again[job_key("bad")])
    assert board.reused == 3 and board.executed == 3
    board.close()


def test_a_bug_in_a_job_aborts_without_storing_anything(store):
    store.open_run("r", "f")
    board = WorkBoard(store, "r", meter=UsageMeter(), progress=False)

    def broken(_):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        board.run("rollout", {"k": 1}, broken)
    assert store.get_many("r", "rollout", ["k"]) == {}
    board.close()


def test_storage_arguments_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("PICACO_STORAGE", "sqlite:///elsewhere.db")
    assert resolve_storage_url("default") == "sqlite:///elsewhere.db"
    assert resolve_storage_url(None) is None
    assert resolve_storage_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_storage_url(str(tmp_path / "missing" / "x.db"))
    with pytest.raises(ConfigurationError, match="storage must be"):
        resolve_storage_url(42)
    with pytest.raises(ConfigurationError, match="needs the database driver 'pymysql'"):
        RunStore("mysql+pymysql://u:secret@localhost/db")
    with pytest.raises(ConfigurationError, match="dialect\\+driver"):
        RunStore("nosuchdb://u:secret@localhost/db")


def test_passwords_never_appear_in_errors():
    with pytest.raises(ConfigurationError) as error:
        RunStore("postgresql+psycopg://user:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(error.value) and "***" in str(error.value)


def test_a_crashed_worker_on_this_host_is_taken_over_at_once_a_remote_one_after_its_heartbeat(tmp_path):
    import socket
    import subprocess
    import sys

    import sqlalchemy as sa

    from picaco_dspy.runtime.database import WORKERS

    store = RunStore(f"sqlite:///{tmp_path / 'crash.db'}", heartbeat_seconds=0.1, stale_after_seconds=60)
    try:
        store.open_run("r", "f")
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(gone.stdout)  # a process that has exited: its pid is free
        now = time.time()
        with store.engine.begin() as conn:  # a local worker killed with -9 (fresh heartbeat) and a remote one
            for worker, host in (("local-dead", socket.gethostname()[:200]), ("remote", "another-machine")):
                conn.execute(
                    WORKERS.insert().values(
                        run="r", worker=worker, host=host, pid=dead_pid, started_at=now, last_seen=now
                    )
                )
        assert store.claim("r", "rollout", ["a"], "local-dead", limit=1) == ["a"]
        assert store.claim("r", "rollout", ["b"], "remote", limit=1) == ["b"]
        rerun = store.join("r")
        started = time.monotonic()
        assert store.claim("r", "rollout", ["a", "b"], rerun, limit=5) == ["a"]  # no wait for the dead local worker
        assert time.monotonic() - started < 5
        with store.engine.begin() as conn:  # the remote worker's heartbeat goes silent: then it is taken over too
            conn.execute(sa.update(WORKERS).where(WORKERS.c.worker == "remote").values(last_seen=now - 120))
        assert store.claim("r", "rollout", ["b"], rerun, limit=5) == ["b"]
    finally:
        store.close()


def test_a_provider_that_stops_answering_shows_in_the_progress_bar_and_the_log(store, caplog):
    import logging
    import time

    from tqdm.auto import tqdm

    store.open_run("r", "f")
    board = WorkBoard(store, "r", meter=UsageMeter(), progress=True, stall_after=0.2, stall_log_every=0.4)
    postfixes = []
    original = tqdm.set_postfix_str

    def record(self, text="", refresh=True):
        postfixes.append(text)
        return original(self, text, refresh=refresh)

    def slow(payload):
        time.sleep(1.6)  # a provider that hangs, then answers
        return payload

    tqdm.set_postfix_str = record
    try:
        with caplog.at_level(logging.WARNING, logger="picaco_dspy.runtime.stall_watch"):
            assert board.run("rollout", {job_key("a"): "a"}, slow, role="target")[job_key("a")] == "a"
    finally:
        tqdm.set_postfix_str = original
    assert any(text.startswith("no target answer for") for text in postfixes)
    assert postfixes[-1] == ""  # cleared once the answer came
    warnings = [r.getMessage() for r in caplog.records if "No target call has finished" in r.getMessage()]
    assert 1 <= len(warnings) <= 4  # repeated while it lasts, not once per poll

    quick = WorkBoard(store, "r", meter=UsageMeter(), progress=False, stall_after=0.2, stall_log_every=0.4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="picaco_dspy.runtime.stall_watch"):
        quick.run("rollout", {job_key("b"): "b"}, lambda payload: payload, role="target")
    assert not caplog.records  # a provider that answers is never reported
    board.close()
    quick.close()


def test_the_ledger_keeps_what_a_job_paid_before_its_process_died(store):
    import dspy

    from picaco_dspy.testing.scripted_world import ScriptedEngine

    store.open_run("r", "f")
    engine = ScriptedEngine()
    lm = dspy.LM("scripted/world", engine=engine, cache=False)
    board = WorkBoard(store, "r", meter=UsageMeter(), progress=False)

    def two_calls_then_death(prompt):
        lm(prompt)
        lm(prompt + " (revise)")  # a two-predictor program: both calls are paid
        raise RuntimeError("killed between the second call and storing the rollout")

    with pytest.raises(RuntimeError, match="killed"):
        board.run("rollout", {job_key("p"): "p"}, two_calls_then_death, role="target")
    assert store.get_many("r", "rollout", [job_key("p")]) == {}  # nothing stored: the job runs again
    assert store.ledger("r")["target"]["calls"] == 2 == sum(engine.calls.values())
    board.close()

    again = WorkBoard(store, "r", meter=UsageMeter(), progress=False)
    again.run("rollout", {job_key("p"): "p"}, lambda prompt: lm(prompt + " again")[0], role="target")
    assert store.ledger("r")["target"]["calls"] == 3 == sum(engine.calls.values())  # the lost calls stay counted
    again.close()


def test_a_job_cut_between_two_calls_repays_neither_on_another_machine(store):
    import dspy

    def fresh_machine():  # DSPy's own cache is per machine: a new, empty one
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
        dspy.cache.reset_memory_cache()

    original_cache = dspy.cache
    try:
        _cut_between_calls(store, fresh_machine)
    finally:
        dspy.cache = original_cache


def _cut_between_calls(store, fresh_machine):
    import dspy

    from picaco_dspy.runtime.call_cache import shared_call_cache
    from picaco_dspy.testing.scripted_world import ScriptedEngine

    store.open_run("r", "f")
    fresh_machine()
    first = ScriptedEngine()
    lm = dspy.LM("scripted/world", engine=first)
    board = WorkBoard(store, "r", meter=UsageMeter(), progress=False)

    def draft_then_death(prompt):
        lm(prompt, rollout_id=7)  # the first predictor's call is paid...
        raise RuntimeError("killed before the second predictor ran")

    with shared_call_cache(store, "r"), pytest.raises(RuntimeError, match="killed"):
        board.run("rollout", {job_key("p"): "p"}, draft_then_death, role="target")
    board.close()

    fresh_machine()
    second = ScriptedEngine()
    lm2 = dspy.LM("scripted/world", engine=second)
    other = WorkBoard(store, "r", meter=UsageMeter(), progress=False)

    def draft_and_revise(prompt):
        draft = lm2(prompt, rollout_id=7)[0]
        return lm2(f"Revise: {draft}", rollout_id=7)[0]

    with shared_call_cache(store, "r") as shared:
        other.run("rollout", {job_key("p"): "p"}, draft_and_revise, role="target")
    assert sum(first.calls.values()) == 1 and sum(second.calls.values()) == 1  # the draft was not paid again
    assert shared is not None and shared.shared_hits == 1
    assert store.ledger("r")["target"]["calls"] == 2  # one call each, both counted once
    other.close()
