import math

import pytest

from picaco_dspy.objective.judge_parsing import (
    JudgementParseError,
    conformity_to_probability,
    expected_score_at,
    parse_ratings,
    parse_single_score,
    parse_verdict,
    probability_to_conformity,
    yes_probability,
)

NAMES = ["Universalism", "Self-direction", "Hedonism", "Stimulation"]


@pytest.mark.parametrize(
    "text",
    [
        "Universalism: 4\nSelf-direction: 3\nHedonism: 2\nStimulation: 5",
        "1. **Universalism**: 4/5\n2. **Self-direction**: 3/5\n3. **Hedonism**: 2/5\n4. **Stimulation**: 5/5",
        "- universalism = 4\n- self direction = 3\n- HEDONISM = 2\n- Stimulation = 5 out of 5",
        'Here you go: {"Universalism": 4, "Self-direction": 3, "Hedonism": 2, "Stimulation": 5}',
        "Universalism - 4\nSelf-direction - 3\nHedonism - 2\nStimulation - 5",
        "Ratings follow.\n\nUniversalism: 4\n\nSelf-direction: 3\nHedonism: 2\nStimulation: 5\nDone.",
    ],
)
def test_ratings_parse_in_common_formats(text):
    parsed = parse_ratings(text, NAMES)
    assert [parsed[n].score for n in NAMES] == [4, 3, 2, 5]


def test_ratings_offsets_point_at_the_digit():
    text = "Universalism: 4\nSelf-direction: 3\nHedonism: 2\nStimulation: 5"
    parsed = parse_ratings(text, NAMES)
    for name in NAMES:
        assert text[parsed[name].start] == str(int(parsed[name].score))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("Universalism: 4\nSelf-direction: 3\nHedonism: 2", "no rating found for 'Stimulation'"),
        ("Universalism: 4\nSelf-direction: 3\nHedonism: 2\nStimulation: 7", "outside 1-5"),
        ("Universalism: 0\nSelf-direction: 3\nHedonism: 2\nStimulation: 5", "outside 1-5"),
        ("Universalism: 4\nUniversalism: 1\nSelf-direction: 3\nHedonism: 2\nStimulation: 5", "rated twice"),
        ("I think the response is great overall.", "no rating found"),
    ],
)
def test_incomplete_or_out_of_range_ratings_are_errors_not_numbers(text, message):
    with pytest.raises(JudgementParseError, match=message):
        parse_ratings(text, NAMES)


def test_unrelated_labels_are_ignored():
    text = "Overall: 5\nTradition: 1\nUniversalism: 2\nSelf-direction: 2\nHedonism: 2\nStimulation: 2"
    assert {p.score for p in parse_ratings(text, NAMES).values()} == {2}


@pytest.mark.parametrize(
    "text, score", [("4", 4), ("Score: 4/5", 4), ("4 out of 5", 4), ("**3**", 3), ("I rate it 2 (1-5 scale).", 2)]
)
def test_single_score(text, score):
    assert parse_single_score(text).score == score


@pytest.mark.parametrize("text", ["", "great", "4 or maybe 5", "7", "3.5"])
def test_single_score_refuses_ambiguous_answers(text):
    with pytest.raises(JudgementParseError):
        parse_single_score(text)


@pytest.mark.parametrize("text, verdict", [("Yes", True), (" no.", False), ("**Yes**, because", True)])
def test_verdicts(text, verdict):
    assert parse_verdict(text) is verdict


def test_verdict_must_lead():
    with pytest.raises(JudgementParseError):
        parse_verdict("Probably yes")


def test_probability_mapping_is_the_bin_centre_and_invertible():
    assert [conformity_to_probability(c) for c in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert probability_to_conformity(conformity_to_probability(3.7)) == pytest.approx(3.7)
    with pytest.raises(ValueError):
        conformity_to_probability(5.5)


def test_expected_score_from_digit_alternatives():
    tokens = [
        {"token": "Hedonism", "logprob": -0.1, "top_logprobs": []},
        {"token": ":", "logprob": -0.1, "top_logprobs": []},
        {
            "token": " 4",
            "logprob": math.log(0.6),
            "top_logprobs": [
                {"token": " 4", "logprob": math.log(0.6)},
                {"token": " 5", "logprob": math.log(0.3)},
                {"token": " hello", "logprob": math.log(0.1)},
            ],
        },
    ]
    # the digit is the third token: characters 9.. of "Hedonism: 4"
    assert expected_score_at(tokens, 10) == pytest.approx((4 * 0.6 + 5 * 0.3) / 0.9)
    assert expected_score_at(tokens, 2) is None  # not a digit token


def test_yes_probability_reads_the_first_token_only():
    tokens = [
        {
            "token": "No",
            "logprob": math.log(0.5),
            "top_logprobs": [
                {"token": "No", "logprob": math.log(0.5)},
                {"token": " Yes", "logprob": math.log(0.25)},
                {"token": "The", "logprob": math.log(0.25)},
            ],
        },
        {"token": " yes", "logprob": 0.0, "top_logprobs": []},
    ]
    assert yes_probability(tokens) == pytest.approx(1 / 3)
    assert yes_probability([{"token": "The", "logprob": -0.1, "top_logprobs": []}]) is None
    assert yes_probability([]) is None
