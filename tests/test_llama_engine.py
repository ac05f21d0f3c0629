"""The in-process llama.cpp engine: the same request semantics as the transformers engine (seeds, usage,
log-probabilities), and how the local engine is chosen. Needs llama-cpp-python (``.ci/run`` builds it); without it
the engine tests skip with the reason, except when ``PICACO_REQUIRE_LLAMA_SERVER=1``: then they fail."""

from __future__ import annotations

import os

import dspy
import pytest

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.models import llama_engine
from picaco_dspy.models.llama_engine import LlamaCppEngine, llama_cpp_available, local_engine_choice


@pytest.fixture(scope="module")
def engine():
    if not llama_cpp_available():
        reason = "llama-cpp-python is not installed (pip install 'picaco-dspy[llama]', a source build)"
        if os.environ.get("PICACO_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(reason + " (PICACO_REQUIRE_LLAMA_SERVER=1: CI must test it)")
        pytest.skip(reason)
    return LlamaCppEngine()


def lm_on(engine, **kwargs):
    return dspy.LM("local/gguf", engine=engine, cache=False, **{"temperature": 1.0, "max_tokens": 8, **kwargs})


def test_seeds_decide_the_sample_and_unseeded_repeats_draw_again_in_the_same_order(engine):
    lm = lm_on(engine)
    prompt = "Name a fruit and a colour."
    same, again, other = (lm(prompt, seed=s)[0] for s in (3, 3, 4))
    assert same == again and same != other
    fresh = LlamaCppEngine()
    unseeded = [lm_on(fresh)(prompt)[0] for _ in range(3)]
    assert len(set(unseeded)) > 1  # a repeated request is a new draw
    replay = LlamaCppEngine()
    assert [lm_on(replay)(prompt)[0] for _ in range(3)] == unseeded  # ... and the same draws from an empty start


def test_usage_counts_the_templated_prompt_and_the_new_tokens(engine):
    from transformers import AutoTokenizer

    from picaco_dspy.models.loading import resolve_model_path

    lm = lm_on(engine, temperature=0.0, max_tokens=5)
    lm("Write a long story about a dragon.")
    usage = lm.history[-1]["usage"]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded"))
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a long story about a dragon."}], add_generation_prompt=True
    )
    assert usage["prompt_tokens"] == len(getattr(rendered, "input_ids", rendered))
    assert usage["completion_tokens"] == 5  # the limit is honoured


def test_logprob_requests_return_the_chosen_token_and_its_alternatives(engine):
    lm = lm_on(engine, temperature=0.0, max_tokens=1)
    answer = lm("Is the sky blue? Answer Yes or No.", logprobs=True, top_logprobs=5)[0]
    content = answer["logprobs"]["content"]
    assert len(content) == 1
    top = [alt["logprob"] for alt in content[0]["top_logprobs"]]
    assert len(top) == 5 and top == sorted(top, reverse=True) and all(isinstance(v, float) for v in top)
    assert content[0]["token"] == content[0]["top_logprobs"][0]["token"]  # greedy picks the most likely token


def test_the_local_engine_is_chosen_by_environment_or_availability(monkeypatch):
    monkeypatch.setenv("PICACO_LOCAL_ENGINE", "transformers")
    assert local_engine_choice() == "transformers"
    monkeypatch.setenv("PICACO_LOCAL_ENGINE", "gpu-please")
    with pytest.raises(ConfigurationError, match="PICACO_LOCAL_ENGINE"):
        local_engine_choice()
    monkeypatch.delenv("PICACO_LOCAL_ENGINE")
    monkeypatch.setattr(llama_engine, "llama_cpp_available", lambda: False)
    assert local_engine_choice() == "transformers"
    monkeypatch.setenv("PICACO_LOCAL_ENGINE", "llama_cpp")
    with pytest.raises(ConfigurationError, match="not installed"):
        local_engine_choice()
