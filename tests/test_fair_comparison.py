"""Equal-budget comparisons are fair: a method pays for every LM call it makes, whatever ran before it."""

from __future__ import annotations

import dspy
import pytest

from picaco_dspy import ValueSet
from picaco_dspy.baselines.harness import MethodContext, MethodRun, fresh_lm_cache, run_method
from picaco_dspy.runtime.usage import BUDGET_ROLES
from picaco_dspy.testing.scripted_world import ScriptedEngine
from tests.support.method_context import method_context

BUDGET = 60


def scripted_context(liberalism: ValueSet) -> tuple[MethodContext, ScriptedEngine]:
    """A comparison context on a new scripted engine (its answers depend only on the requests it has served)."""
    engine = ScriptedEngine()
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    context = method_context(lm, BUDGET, picaco_kwargs={"num_iterations": 1})
    return context, engine


def calls_paid(run: MethodRun) -> int:
    """Target + judge + proposer calls the method's usage reports."""
    return sum(run.usage[role]["calls"] for role in BUDGET_ROLES)


def run_on_new_engine(method: str, liberalism: ValueSet) -> tuple[MethodRun, int]:
    """Run ``method`` and return it with the number of requests its engine actually served."""
    context, engine = scripted_context(liberalism)
    run = run_method(method, context)
    assert run.error is None, run.error
    return run, sum(engine.calls.values())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("GEPA", "MIPROv2"),  # both start by scoring the same seed program on the same valset
        ("PICACO", "PICACO"),  # same seed, same rollout ids: every request repeats; the run storage must not be shared
    ],
)
def test_a_method_pays_after_another_exactly_as_when_it_runs_alone(first, second, liberalism):
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    alone, served_alone = run_on_new_engine(second, liberalism)

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    run_on_new_engine(first, liberalism)
    after, served_after = run_on_new_engine(second, liberalism)

    assert calls_paid(alone) > 0
    assert served_after == served_alone  # no answer of the first method was handed to the second for free
    assert calls_paid(after) == calls_paid(alone) == served_alone  # usage counts exactly what the engine served
    assert after.usage == alone.usage


def test_fresh_lm_cache_neither_reuses_nor_leaves_answers(scripted_lm, engine):
    program = dspy.Predict("query -> response")
    with dspy.context(lm=scripted_lm):
        program(query="What should I cook tonight?")
        assert engine.calls["target"] == 1
        with fresh_lm_cache():
            program(query="What should I cook tonight?")  # paid again: the outer answer is not visible
            program(query="What should I cook tonight?")  # served from the block's own cache
            program(query="Where should I travel?")
        assert engine.calls["target"] == 3
        program(query="What should I cook tonight?")  # the outer cache still has its answer
        program(query="Where should I travel?")  # the block's answer did not leak out
    assert engine.calls["target"] == 4


def test_fresh_lm_cache_restores_the_previous_cache_even_after_an_error():
    previous = dspy.cache
    with pytest.raises(RuntimeError, match="method failed"), fresh_lm_cache() as isolated:
        assert dspy.cache is isolated and isolated is not previous
        assert not isolated.enable_disk_cache and isolated.enable_memory_cache
        raise RuntimeError("method failed")
    assert dspy.cache is previous


def test_fresh_lm_cache_leaves_dspys_lazy_default_unbuilt(monkeypatch):
    monkeypatch.delattr(dspy, "cache")  # as in a process that has not read dspy.cache yet
    with fresh_lm_cache() as isolated:
        assert dspy.cache is isolated
    assert "cache" not in vars(dspy)
