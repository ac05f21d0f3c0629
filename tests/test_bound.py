import math

import dspy
import numpy as np
import pytest

from picaco_dspy import ConfigurationError, RedundancyScorer, TotalCorrelationBound, ValueJudge, ValueSet
from picaco_dspy.errors import JudgeError
from picaco_dspy.objective.bound import PoolItem, prompt_text, response_text
from picaco_dspy.objective.judge import Judgement
from picaco_dspy.objective.reference import ResponseLikelihood
from picaco_dspy.testing.scripted_world import MARKERS, ScriptedEngine


class FixedEmbedder:
    """Embeds known texts to fixed unit vectors (so cosines are known exactly)."""

    def __init__(self, table):
        self.table = table

    def embed(self, texts):
        return np.stack([np.asarray(self.table[t], dtype=np.float32) for t in texts])


class TableScorer:
    """Reference scorer returning given mean log-likelihoods (tokens = 1)."""

    def __init__(self, table):
        self.table = table
        self.requests = []

    def score(self, requests, usage=None):
        self.requests += list(requests)
        return [ResponseLikelihood(self.table[(r.system, r.user, r.response)], 1) for r in requests]


def two_values():
    return ValueSet.from_dict(
        {"name": "two", "values": [{"name": "A", "definition": "aa"}, {"name": "B", "definition": "bb", "weight": 3}]}
    )


def test_reward_matches_hand_computation():
    values = two_values()
    s = values.observation_text()
    embedder = FixedEmbedder({s: [1, 0], "resp": [0.6, 0.8]})
    bound = TotalCorrelationBound(values, judge=ValueJudge(), redundancy=RedundancyScorer(embedder), beta=2.0)
    judgement = Judgement({"A": 5, "B": 2}, {"A": 0.9, "B": 0.3})
    scored = bound.score_judged(judgement, bound.redundancy_of(["x"], ["resp"])[0])
    # weights rescaled to mean 1: A 0.5, B 1.5; q_phi = (1 + 0.6) / 2 = 0.8
    expected = 2.0 * (0.5 * math.log(0.9) + 1.5 * math.log(0.3)) - math.log(0.8)
    assert scored.redundancy == pytest.approx(0.8)
    assert scored.reward == pytest.approx(expected)
    low = 2.0 * 2 * math.log(0.1) - 0.0
    high = 2.0 * 2 * math.log(0.9) - math.log(0.5)
    assert bound.reward_range == pytest.approx((low, high))
    assert scored.score == pytest.approx((expected - low) / (high - low))


def test_negative_cosine_counts_as_unrelated():
    values = two_values()
    embedder = FixedEmbedder({values.observation_text(): [1, 0], "anti": [-1, 0]})
    bound = TotalCorrelationBound(values, judge=ValueJudge(), redundancy=RedundancyScorer(embedder))
    assert bound.redundancy_of(["x"], ["anti"]) == [pytest.approx(0.5)]


def test_parroting_lowers_the_reward_at_equal_conformity():
    values = ValueSet.builtin("liberalism-4")
    bound = TotalCorrelationBound(values, judge=ValueJudge(), redundancy="hashing")
    judgement = Judgement({n: 4 for n in values.names}, {n: 0.7 for n in values.names})
    parrot, plain = values.observation_text(), "Go for a long walk by the river with a friend and cook dinner together."
    q_parrot, q_plain = bound.redundancy_of(["x", "x"], [parrot, plain])
    assert q_parrot > 0.95 and q_plain < 0.7
    assert bound.score_judged(judgement, q_parrot).reward < bound.score_judged(judgement, q_plain).reward


def test_without_redundancy_the_term_is_dropped():
    values = two_values()
    bound = TotalCorrelationBound(values, judge=ValueJudge(), redundancy=None)
    scored = bound.score_judged(Judgement({"A": 5, "B": 5}, {"A": 0.9, "B": 0.9}), None)
    assert scored.reward == pytest.approx(2 * math.log(0.9)) and scored.score == pytest.approx(1.0)


def test_instruction_score_is_the_likelihood_weighted_pool_reward():
    values = two_values()
    table = {("e", "x1", "good"): -1.0, ("e", "x1", "bad"): -2.0, ("e", "x2", "only"): -0.5}
    scorer = TableScorer(table)
    bound = TotalCorrelationBound(
        values, judge=ValueJudge(), reference=scorer, redundancy=None, likelihood_weighting="raw"
    )
    result = bound.instruction_score(
        "e", [("x1", [PoolItem("good", 1.0), PoolItem("bad", -1.0)]), ("x2", [PoolItem("only", 3.0)])]
    )
    w_good = math.exp(-1) / (math.exp(-1) + math.exp(-2))
    assert result.weights[0] == pytest.approx([w_good, 1 - w_good])
    assert result.per_prompt == pytest.approx([w_good - (1 - w_good), 3.0])
    assert result.value == pytest.approx((w_good - (1 - w_good) + 3.0) / 2)


def test_temperature_sharpens_the_weights():
    values = two_values()
    table = {("e", "x", "a"): -1.0, ("e", "x", "b"): -1.5}
    pool = [("x", [PoolItem("a", 1.0), PoolItem("b", 0.0)])]
    flat = TotalCorrelationBound(
        values, judge=ValueJudge(), reference=TableScorer(table), redundancy=None, likelihood_weighting="raw"
    )
    sharp = TotalCorrelationBound(
        values,
        judge=ValueJudge(),
        reference=TableScorer(table),
        redundancy=None,
        weight_temperature=0.05,
        likelihood_weighting="raw",
    )
    assert (
        flat.instruction_score("e", pool).value
        < sharp.instruction_score("e", pool).value
        == pytest.approx(1.0, abs=1e-4)
    )


def test_pmi_weighting_subtracts_the_bare_likelihood():
    values = two_values()
    table = {("e", "x", "a"): -1.0, ("e", "x", "b"): -1.0, ("", "x", "a"): -0.2, ("", "x", "b"): -3.0}
    bound = TotalCorrelationBound(
        values, judge=ValueJudge(), reference=TableScorer(table), redundancy=None, likelihood_weighting="pmi"
    )
    result = bound.instruction_score("e", [("x", [PoolItem("a", 1.0), PoolItem("b", 0.0)])], bare_instruction="")
    w_a = math.exp(-0.8) / (math.exp(-0.8) + math.exp(2.0))
    assert result.value == pytest.approx(w_a)
    with pytest.raises(ConfigurationError, match="instruction-free"):
        bound.instruction_score("e", [("x", [PoolItem("a", 1.0)])])


def test_importance_weighting_divides_by_the_instruction_each_response_came_from():
    values = two_values()
    table = {("A", "x", "y1"): -1.0, ("A", "x", "y2"): -0.5, ("B", "x", "y1"): -2.0, ("B", "x", "y2"): -3.0}
    bound = TotalCorrelationBound(values, judge=ValueJudge(), reference=TableScorer(table), redundancy=None)
    assert bound.likelihood_weighting == "importance"  # the default
    pool = [("x", [PoolItem("y1", 1.0, origin="A"), PoolItem("y2", 0.0, origin="A")])]
    # the instruction that produced the pool weighs its own samples uniformly: no advantage from having made them
    assert bound.instruction_score("A", pool).value == pytest.approx(0.5)
    w1 = math.exp(-2.0 + 1.0) / (math.exp(-2.0 + 1.0) + math.exp(-3.0 + 0.5))
    assert bound.instruction_score("B", pool).value == pytest.approx(w1)
    with pytest.raises(ConfigurationError, match="origin"):
        bound.instruction_score("A", [("x", [PoolItem("y1", 1.0)])])


def test_instruction_score_needs_a_reference_model():
    bound = TotalCorrelationBound(two_values(), judge=ValueJudge(), redundancy=None)
    with pytest.raises(ConfigurationError, match="reference model"):
        bound.instruction_score("e", [("x", [PoolItem("a", 1.0)])])


def test_metric_is_a_five_argument_dspy_metric(scripted_lm, liberalism):
    bound = TotalCorrelationBound(liberalism, judge=ValueJudge(lm=scripted_lm), redundancy="hashing")
    gold = dspy.Example(query="Plan my weekend").with_inputs("query")
    pred = dspy.Prediction(response=f"{MARKERS['Universalism'].capitalize()}. {MARKERS['Hedonism'].capitalize()}.")
    out = bound(gold, pred, None, "predict", None)
    assert 0 < out.score < 1
    assert out.objective_scores == {"Universalism": 5, "Self-direction": 1, "Hedonism": 5, "Stimulation": 1}
    assert (
        "Self-direction" in out.feedback
        and "Stimulation" in out.feedback
        and "Hedonism" not in out.feedback.split("Neglected")[1]
    )
    assert bound(gold, pred).score == out.score  # two-argument form (dspy.Evaluate)
    assert bound(gold, pred, trace=[]) is False  # bootstrapping form: strict bool against success_threshold


def test_metric_works_with_dspy_evaluate(scripted_lm, liberalism):
    bound = TotalCorrelationBound(liberalism, judge=ValueJudge(lm=scripted_lm), redundancy="hashing")
    program = dspy.Predict("query -> response")
    devset = [dspy.Example(query=f"question {i}").with_inputs("query") for i in range(3)]
    with dspy.context(lm=scripted_lm):
        result = dspy.Evaluate(devset=devset, metric=bound, num_threads=1)(program)
    assert 0 < result.score < 100 and len(result.results) == 3


def test_judge_failure_propagates_out_of_the_metric(liberalism):
    lm = dspy.LM("scripted/world", engine=ScriptedEngine(fail_judge_for="BAD"), temperature=0.0)
    bound = TotalCorrelationBound(liberalism, judge=ValueJudge(lm=lm, max_retries=0), redundancy=None)
    with pytest.raises(JudgeError):
        bound(dspy.Example(query="q").with_inputs("query"), dspy.Prediction(response="BAD"))


def test_prompt_and_response_extraction():
    ex = dspy.Example(query="hello", gold="x").with_inputs("query")
    assert prompt_text(ex) == "hello"
    two = dspy.Example(a="1", b="2").with_inputs("a", "b")
    assert prompt_text(two) == "a: 1\nb: 2" and prompt_text(two, "b") == "2"
    with pytest.raises(ConfigurationError, match="with_inputs"):
        prompt_text(dspy.Example(query="no inputs"))
    assert response_text(dspy.Prediction(reasoning="r", answer="final")) == "final"
    assert response_text(dspy.Prediction(response="a", other="b")) == "a"
    with pytest.raises(ConfigurationError, match="response_field"):
        response_text(dspy.Prediction(n=3))


@pytest.mark.parametrize(
    "kwargs",
    [{"beta": 0}, {"beta": -1}, {"weight_temperature": 0}, {"likelihood_weighting": "soft"}, {"success_threshold": 2}],
)
def test_bad_metric_settings_are_rejected(kwargs):
    with pytest.raises(ConfigurationError):
        TotalCorrelationBound(two_values(), judge=ValueJudge(), redundancy=None, **kwargs)
