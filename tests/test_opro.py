import json

import dspy
import pytest

from picaco_dspy import ConfigurationError
from picaco_dspy.baselines.opro import OPRO
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.scripted_world import honour_probabilities


def prompts(n):
    return [dspy.Example(query=f"How should I spend free day number {i}?").with_inputs("query") for i in range(n)]


def covers_all(instruction):
    return all(p >= 0.9 for p in honour_probabilities(instruction).values())


def test_opro_improves_on_the_seed_where_the_better_instruction_is_known(scripted_metric, scripted_lm, engine):
    optimizer = OPRO(
        metric=scripted_metric,
        prompt_model=scripted_lm,
        num_steps=4,
        candidates_per_step=4,
        num_threads=1,
        progress=False,
    )
    with dspy.context(lm=scripted_lm):
        aligned = optimizer.compile(Assistant(), trainset=prompts(4))
    result = aligned.opro_result
    seed = result.trajectory[0]
    assert seed.step == 0 and not covers_all(seed.instruction)
    assert covers_all(result.best_instruction) and result.best_score > seed.score
    assert result.best_instruction in aligned.respond.signature.instructions
    usage = result.usage
    assert usage["proposer"]["calls"] == engine.calls["proposer"] > 0
    assert usage["target"]["calls"] == engine.calls["target"] and usage["judge"]["calls"] == engine.calls["judge"]
    json.dumps(result.to_dict())
    scores = [c["score"] for c in aligned.candidate_programs]
    assert scores == sorted(scores, reverse=True)


def test_opro_stops_at_the_budget_and_keeps_the_best_so_far(scripted_metric, scripted_lm):
    budget = 30  # the seed costs 4 runs + 4 judgements; each candidate 1 proposal + 8
    optimizer = OPRO(
        metric=scripted_metric,
        prompt_model=scripted_lm,
        num_steps=10,
        candidates_per_step=4,
        max_lm_calls=budget,
        num_threads=1,
        progress=False,
    )
    with dspy.context(lm=scripted_lm):
        aligned = optimizer.compile(Assistant(), trainset=prompts(4))
    result = aligned.opro_result
    spent = sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer"))
    assert result.budget_stopped and spent <= budget
    assert result.best_score == max(s.score for s in result.trajectory)
    with pytest.raises(ConfigurationError, match="cannot pay for one evaluation"):
        OPRO(metric=scripted_metric, max_lm_calls=3, progress=False).compile(Assistant(), trainset=prompts(4))


def test_opro_rejects_bad_settings(scripted_metric):
    for bad in ({"num_steps": 0}, {"candidates_per_step": -1}, {"max_lm_calls": 0}, {"eval_size": 0}):
        with pytest.raises(ConfigurationError):
            OPRO(metric=scripted_metric, **bad)
    with pytest.raises(ConfigurationError, match="TotalCorrelationBound"):
        OPRO(metric=lambda gold, pred: 1.0)
