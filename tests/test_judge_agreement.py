"""Judge agreement with human value labels, on constructed data whose answers are known."""

from __future__ import annotations

import json
import math

import pytest

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.evaluation.judge_agreement import (
    LabelledQuery,
    agreement,
    agreement_table,
    judge_agreement,
    load_labelled,
    spearman,
)
from picaco_dspy.objective.values import ValueSet
from tests.support.scripted_reference import WordOverlap

TWO = ValueSet.from_dict(
    {
        "name": "two",
        "values": [
            {"name": "Self-direction", "definition": "Independent thought and action."},
            {"name": "Benevolence", "definition": "Caring for people close to you."},
        ],
    }
)


def query(labels_a, labels_b, prompt="q"):
    return LabelledQuery(
        prompt,
        tuple(f"r{i}" for i in range(len(labels_a))),
        {"Self-direction": tuple(labels_a), "Benevolence": tuple(labels_b)},
    )


def test_spearman_matches_known_values_and_handles_ties_and_constants():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_a_judge_that_copies_the_labels_agrees_perfectly_and_its_reverse_fails():
    queries = [query([0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], prompt=f"q{i}") for i in range(5)]
    copy = [dict(q.labels) for q in queries]
    reverse = [{v: [-x for x in s] for v, s in q.labels.items()} for q in queries]
    perfect, opposite = agreement(copy, queries, margin=0.05), agreement(reverse, queries, margin=0.05)
    assert perfect.overall.spearman == pytest.approx(1.0) and perfect.overall.pairwise_accuracy == 1.0
    assert opposite.overall.spearman == pytest.approx(-1.0) and opposite.overall.pairwise_accuracy == 0.0
    assert perfect.per_value["Benevolence"].pairs == 5 * 3  # every pair differs by >= 0.05


def test_close_labels_are_left_out_of_pairwise_accuracy_and_ties_count_half():
    queries = [query([0.30, 0.29, -0.5], [0.1, 0.0, -0.1])]
    flat = [{"Self-direction": [1, 1, 1], "Benevolence": [3, 2, 1]}]
    report = agreement(flat, queries, margin=0.1)
    sd = report.per_value["Self-direction"]
    assert sd.pairs == 2 and sd.pairwise_accuracy == 0.5  # (0.30, 0.29) too close; the two others tied: half each
    assert sd.spearman is None  # constant scores carry no ranking
    assert report.per_value["Benevolence"].spearman == pytest.approx(1.0)


def test_the_interval_covers_the_mean_and_shrinks_to_it_for_one_query():
    queries = [query([0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], prompt=f"q{i}") for i in range(8)]
    noisy = [{"Self-direction": [i % 3, (i + 1) % 3, (i + 2) % 3], "Benevolence": [1, 2, 3]} for i in range(8)]
    report = agreement(noisy, queries)
    low, high = report.overall.interval
    assert low <= report.overall.spearman <= high and low < high
    single = agreement(noisy[:1], queries[:1])
    assert single.overall.interval == (single.overall.spearman, single.overall.spearman)


def test_judge_agreement_runs_a_scorer_on_every_response_and_prints_a_row():
    queries = [query([0.3, -0.1, 0.2], [-0.2, 0.4, 0.0])]
    seen = []

    def by_length(prompt, response):
        seen.append((prompt, response))
        return {"Self-direction": len(response), "Benevolence": -len(response)}

    report = judge_agreement(by_length, queries, name="length")
    assert seen == [("q", "r0"), ("q", "r1"), ("q", "r2")] and report.judgements == 3
    assert "length" in agreement_table([report])


def test_both_file_formats_load_and_value_names_match_loosely(tmp_path):
    simple = tmp_path / "simple.jsonl"
    simple.write_text(
        json.dumps(
            {"prompt": "p", "responses": ["a", "b"], "labels": {"self_direction": [1, 0], "BENEVOLENCE": [0, 1]}}
        )
    )
    loaded = load_labelled(simple, TWO)
    assert loaded[0].labels == {"Self-direction": (1.0, 0.0), "Benevolence": (0.0, 1.0)}
    portrait = tmp_path / "portrait.jsonl"
    responses = [
        {"text": t, "schwartz": {"Self_Direction": s, "Benevolence": b}}
        for t, s, b in [("a", 0.2, -0.1), ("b", -0.3, 0.4)]
    ]
    portrait.write_text(json.dumps({"prompt": "p", "meta": {"responses": responses}}))
    assert load_labelled(portrait, TWO)[0].labels["Self-direction"] == (0.2, -0.3)


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "is not JSON"),
        (json.dumps({"responses": ["a"]}), "'prompt' string"),
        (json.dumps({"prompt": "p", "responses": ["a", "b"], "labels": {"Power": [1, 0]}}), "no labels for"),
        (json.dumps({"prompt": "p", "responses": ["a", "b"], "labels": {"Benevolence": [1]}}), "one number per"),
        (json.dumps({"prompt": "p", "responses": ["a"], "labels": {"Benevolence": [1], "Self-direction": [1]}}), "two"),
    ],
)
def test_malformed_files_are_named_with_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigurationError, match=message):
        load_labelled(path, TWO)


def test_missing_labels_for_some_responses_are_skipped_not_counted():
    queries = [query([0.3, math.nan, -0.2], [0.1, 0.2, 0.3])]
    report = agreement([{"Self-direction": [2, 0, 1], "Benevolence": [1, 2, 3]}], queries)
    assert report.per_value["Self-direction"].spearman == pytest.approx(1.0)
    assert report.per_value["Self-direction"].pairs == 1


def test_the_likelihood_reading_rewards_responses_that_make_a_value_statement_likelier():
    from picaco_dspy.objective.value_readings import ValueStatementLikelihood

    reader = ValueStatementLikelihood(WordOverlap())
    caring = reader.scores("Help?", "I care about people close to you.", TWO)
    plain = reader.scores("Help?", "Here is the answer.", TWO)
    assert caring["Benevolence"] > plain["Benevolence"] == pytest.approx(0.0)  # PMI against the null response
    contrasted = ValueStatementLikelihood(WordOverlap(), contrast=True).scores("Help?", "I care about people.", TWO)
    assert sum(contrasted.values()) == pytest.approx(0.0) and contrasted["Benevolence"] > contrasted["Self-direction"]


class DigitPreference:
    """A scripted reference model: the rating answer's log-probability is fixed per digit."""

    def __init__(self, logps):
        self.logps = logps

    def score(self, requests, usage=None):
        from picaco_dspy.objective.reference import ResponseLikelihood

        return [ResponseLikelihood(total=self.logps[r.response], tokens=1) for r in requests]


def test_the_rating_reading_is_the_expected_digit_under_the_whole_digit_distribution():
    from picaco_dspy.objective.value_readings import RatingLikelihood

    logps = {d: math.log(p) for d, p in zip("12345", [0.05, 0.05, 0.1, 0.2, 0.1])}  # need not sum to 1
    scores = RatingLikelihood(DigitPreference(logps)).scores("q", "r", TWO)
    expected = sum(int(d) * math.exp(lp) for d, lp in logps.items()) / sum(math.exp(lp) for lp in logps.values())
    assert scores == {"Self-direction": pytest.approx(expected), "Benevolence": pytest.approx(expected)}
    assert 1.0 <= expected <= 5.0


def test_the_similarity_reading_ranks_a_response_about_a_value_highest_on_it():
    from picaco_dspy.objective.value_readings import ValueStatementSimilarity

    reader = ValueStatementSimilarity("hashing")
    caring = reader.scores("q", "Caring for people close to you matters most.", TWO)
    assert caring["Benevolence"] > caring["Self-direction"]
    contrasted = ValueStatementSimilarity("hashing", contrast=True).scores("q", "Independent thought and action.", TWO)
    assert sum(contrasted.values()) == pytest.approx(0.0) and contrasted["Self-direction"] > 0


def test_contrasting_removes_what_a_response_scores_on_every_value_alike():
    from picaco_dspy.evaluation.judge_agreement import contrast_scores

    # response 0 is rated higher on everything (say, it is longer): contrast leaves only the lean between values
    scores = [{"Self-direction": [5.0, 1.0], "Benevolence": [4.0, 2.0]}]
    assert contrast_scores(scores) == [{"Self-direction": [0.5, -0.5], "Benevolence": [-0.5, 0.5]}]


def test_a_rank_ensemble_ignores_scales_and_averages_ranks():
    from picaco_dspy.evaluation.judge_agreement import rank_ensemble

    big = [{"Self-direction": [100.0, 300.0, 200.0], "Benevolence": [1.0, 1.0, 2.0]}]
    small = [{"Self-direction": [0.3, 0.2, 0.1], "Benevolence": [0.1, 0.2, 0.3]}]
    combined = rank_ensemble([big, small])
    assert combined == [{"Self-direction": [1.0, 1.5, 0.5], "Benevolence": [0.25, 0.75, 2.0]}]


def test_the_trust_note_says_noise_when_the_interval_includes_zero_and_not_otherwise():
    queries = [query([0.3, -0.1, 0.2], [-0.2, 0.4, 0.0], prompt=f"q{i}") for i in range(6)]
    copy = agreement([dict(q.labels) for q in queries], queries, name="copier")
    noisy = [{"Self-direction": [i % 3, (i + 1) % 3, (i + 2) % 3], "Benevolence": [2, 1, 0]} for i in range(6)]
    chance = agreement(noisy, queries, name="guesser")
    assert copy.discriminates and "better than chance" in copy.trust_note() and "noise" not in copy.trust_note()
    assert not chance.discriminates and "measure noise" in chance.trust_note()


def test_measure_judge_counts_the_judge_calls_and_a_bad_file_fails_before_any(tmp_path):
    import dspy

    from picaco_dspy.evaluation.judge_agreement import measure_judge
    from picaco_dspy.objective.judge import ValueJudge
    from picaco_dspy.testing.scripted_world import ScriptedEngine

    labels = tmp_path / "labels.jsonl"
    rows = [
        {
            "prompt": f"p{i}",
            "responses": ["a", "bb", "ccc"],
            "labels": {"Self-direction": [0, 1, 2], "Benevolence": [2, 1, 0]},
        }
        for i in range(3)
    ]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = ScriptedEngine()
    judge = ValueJudge(lm=dspy.LM("scripted/judge", engine=engine, cache=False), use_logprobs=False)
    report = measure_judge(judge, TWO, labels, limit=2)
    assert report.judgements == 6 and report.usage["calls"] == 6  # one joint call per response, two queries
    assert report.name == "judge scripted/judge"
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(ConfigurationError):
        measure_judge(judge, TWO, tmp_path / "bad.jsonl")
    assert report.usage["calls"] == 6 and engine.calls["judge"] == 6


def test_a_failed_judgement_is_left_out_and_counted_never_scored(caplog):
    from picaco_dspy.errors import JudgeError

    queries = [query([0.5, -0.1, 0.2], [-0.2, 0.4, 0.0])]

    def flaky(prompt, response):
        if response == "r1":
            raise JudgeError("the judge LM call failed: RateLimitError")
        return {"Self-direction": {"r0": 3.0, "r2": 2.0}[response], "Benevolence": {"r0": 1.0, "r2": 2.0}[response]}

    report = judge_agreement(flaky, queries, name="flaky")
    assert report.failed == 1 and report.judgements == 3
    assert report.per_value["Self-direction"].spearman == pytest.approx(1.0)  # r0 > r2, as labelled; r1 left out
    assert report.per_value["Self-direction"].pairs == 1
    assert "1 judgements failed" in agreement_table([report]) and "RateLimitError" in caplog.text
