"""Test configuration: offline, a fresh DSPy cache per test, scripted LMs."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="picaco-test-dspy-cache-"))

import dspy  # noqa: E402
import pytest  # noqa: E402

from picaco_dspy import RedundancyScorer, TotalCorrelationBound, ValueJudge, ValueSet  # noqa: E402
from picaco_dspy.objective.redundancy import HashingEmbedder
from picaco_dspy.testing.scripted_world import ScriptedEngine, ScriptedReference  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_dspy_cache(tmp_path, monkeypatch):
    """Every test starts with an empty DSPy cache and run storage of its own, so call counts do not leak between
    tests."""
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / "dspy-cache"))
    monkeypatch.setenv("PICACO_STORAGE", f"sqlite:///{tmp_path / 'runs.db'}")
    yield


@pytest.fixture
def engine():
    return ScriptedEngine()


@pytest.fixture
def scripted_lm(engine):
    return dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)


@pytest.fixture
def liberalism():
    return ValueSet.builtin("liberalism-4")


@pytest.fixture
def scripted_metric(liberalism, scripted_lm):
    return TotalCorrelationBound(
        liberalism,
        judge=ValueJudge(lm=scripted_lm),
        reference=ScriptedReference(),
        redundancy=RedundancyScorer(HashingEmbedder()),
    )
