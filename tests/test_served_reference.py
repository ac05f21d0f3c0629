"""The served reference model's reading of echo answers, offline (the answers are shaped like those llama-cpp-python's
server sent; ``tests/test_real_server.py`` runs against the server itself)."""

from __future__ import annotations

import pytest

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.models.from_spec import check_reference_spec
from picaco_dspy.objective.served_reference import ServedReferenceModel, _response_entries


def echo_answer(tokens, logprobs, *, generated=0, offsets=True):
    text_offset, position = [], 0
    for token in tokens:
        text_offset.append(position)
        position += len(token)
    logprobs_field = {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": [None] * len(tokens)}
    if offsets:
        logprobs_field["text_offset"] = text_offset
    return {
        "choices": [{"text": "".join(tokens), "logprobs": logprobs_field, "finish_reason": "length"}],
        "usage": {"prompt_tokens": len(tokens) - generated, "completion_tokens": generated},
    }


# the real server's shape: the leading <|im_start|> is dropped, <|im_end|> is an empty string, the first value is null
PREFIX = ["user", "\n", "Hi", "", "\n", "ass", "istant", "\n"]
PREFIX_LOGPROBS = [None, -3.3, -3.8, -0.9, -0.0, -0.006, -0.0, -0.0]


def test_the_response_is_found_at_the_end_of_the_echo_after_the_generated_token():
    tokens, logprobs = PREFIX + ["Hello", " there", "!", " I"], PREFIX_LOGPROBS + [-0.5, -1.0, -0.25, -2.0]
    answer = echo_answer(tokens, logprobs, generated=1)
    assert _response_entries(answer, "Hello there!", end_token=False) == [
        ("Hello", -0.5),
        (" there", -1.0),
        ("!", -0.25),
    ]


def test_the_end_of_turn_token_and_an_empty_response_are_scored():
    answer = echo_answer(PREFIX + ["Hello", ""], PREFIX_LOGPROBS + [-0.5, -0.1])
    assert _response_entries(answer, "Hello", end_token=True) == [("Hello", -0.5), ("", -0.1)]
    empty = echo_answer(PREFIX + [""], PREFIX_LOGPROBS + [-2.0])
    assert _response_entries(empty, "", end_token=True) == [("", -2.0)]


def test_text_offsets_measure_tokens_that_hold_part_of_a_character():
    # a 4-byte emoji split over two tokens: the server prints an empty string for the first piece and the whole
    # character for the second, but its offsets (from the decoded prefix) put the character on the second token
    tokens = PREFIX + ["Ok", " ", "", "😀"]
    answer = echo_answer(tokens, PREFIX_LOGPROBS + [-0.5, -0.2, -3.0, -0.01])
    assert [lp for _, lp in _response_entries(answer, "Ok 😀", end_token=False)] == [-0.5, -0.2, -3.0, -0.01]


@pytest.mark.parametrize(
    "answer, message",
    [
        ({"choices": []}, "no choices"),
        ({"choices": [{"text": "x", "logprobs": None}]}, "no logprobs"),
        ({"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": []}}]}, "per-token"),
        (echo_answer(["a", "b"], [None, -1.0]), "do not cover"),  # the prompt is shorter than the response
        (echo_answer(["Hi"], [None]), "do not cover"),  # the one entry has no value (servers that do not echo)
    ],
)
def test_answers_without_usable_prompt_logprobs_are_refused(answer, message):
    with pytest.raises(ValueError, match=message):
        _response_entries(answer, "Hi there", end_token=False)


def test_bad_arguments_are_named_before_any_request():
    with pytest.raises(ConfigurationError, match="http"):
        ServedReferenceModel("openai/smollm2", "localhost:8080")
    with pytest.raises(ConfigurationError, match="max_response_tokens"):
        ServedReferenceModel("openai/smollm2", "http://127.0.0.1:1/v1", max_response_tokens=0)
    with pytest.raises(ConfigurationError, match="--api-base"):
        check_reference_spec("server", "openai/smollm2", None)
    with pytest.raises(ConfigurationError, match="served --target"):
        check_reference_spec("server", "local", "http://127.0.0.1:8080/v1")


def test_an_unreachable_server_falls_back_and_says_why(caplog):
    reference = ServedReferenceModel("openai/smollm2", "http://127.0.0.1:9/v1", timeout=2, fallback=ScoredByLength())
    with caplog.at_level("WARNING"):
        reference.load()
    assert reference.backend == "fallback" and "kept failing" in reference.backend_reason
    assert "comes from the local model" in caplog.text


class ScoredByLength:
    def score(self, requests, usage=None):
        from picaco_dspy.objective.reference import ResponseLikelihood

        return [ResponseLikelihood(-float(len(r.response)), len(r.response)) for r in requests]
