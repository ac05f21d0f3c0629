"""Against a real inference server: llama-cpp-python's OpenAI-compatible server on loopback, serving the embedded
SmolLM2 GGUF file (``tests/support/llama_server.py``; ``.ci/run`` builds it, so in CI these tests run, never skip).

What the server returns is asserted, not assumed: logprob shapes, usage counts, seeds, token limits, error bodies, and
the prompt log-probabilities the served reference model reads. The numbers in the tolerances were measured here
(Q4_1 weights with llama.cpp's quantised activations against transformers on the de-quantised bf16 copy).
"""

from __future__ import annotations

import json
import math

import dspy
import pytest

from picaco_dspy import PICACO, TotalCorrelationBound, ValueSet
from picaco_dspy.cli import main as cli_main
from picaco_dspy.errors import ConfigurationError
from picaco_dspy.models.adapters import PlainTextAdapter
from picaco_dspy.models.embedded import embedded_judge, yes_no_judge
from picaco_dspy.models.from_spec import litellm_lm, make_target
from picaco_dspy.models.openai_http import ServerRefused, post_json
from picaco_dspy.objective.redundancy import HashingEmbedder, RedundancyScorer
from picaco_dspy.objective.reference import LikelihoodRequest, ReferenceModel
from picaco_dspy.objective.served_reference import ServedReferenceModel
from picaco_dspy.optimize.proposer import TemplateProposer
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.runtime.usage import UsageMeter
from picaco_dspy.testing.scripted_world import assistant_with, compile_program
from tests.support.llama_server import llama_server

pytestmark = pytest.mark.real_server

TWO_VALUES = ValueSet.from_dict(
    {
        "name": "two",
        "values": [
            {"name": "Kindness", "definition": "Cares about the wellbeing of the person asking."},
            {"name": "Honesty", "definition": "Says what is true, including uncertainty."},
        ],
    }
)


@pytest.fixture(scope="module")
def server():
    return llama_server()


def served_lm(server, **kwargs):
    return litellm_lm(server.model, server.api_base, cache=False, **kwargs)


def test_chat_answers_honour_the_token_limit_and_seed_and_report_usage_and_logprobs(server):
    lm = served_lm(server, temperature=1.0, max_tokens=6)
    first, again, other = (lm("Name a colour and say why you like it.", seed=s)[0] for s in (7, 7, 8))
    usage = lm.history[-1]["usage"]
    # the token limit is honoured (DSPy's own OpenAI client sent max_completion_tokens, which this server ignores)
    assert 0 < usage["completion_tokens"] <= 6
    # the server counts the prompt as the model's chat template renders it
    from transformers import AutoTokenizer

    from picaco_dspy.models.loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded"))
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a colour and say why you like it."}], add_generation_prompt=True
    )
    assert usage["prompt_tokens"] == len(getattr(rendered, "input_ids", rendered))
    assert first == again and first != other  # the seed is honoured: same seed, same sample
    greedy = served_lm(server, temperature=0.0, max_tokens=2)
    answer = greedy("Is the sky blue? Answer Yes or No.", logprobs=True, top_logprobs=3)[0]
    content = answer["logprobs"].content  # litellm objects, not dicts (the judge reads both)
    assert 1 <= len(content) <= 2
    top = [alt.logprob for alt in content[0].top_logprobs]
    assert len(top) == 3 and top == sorted(top, reverse=True) and all(lp <= 0 for lp in top)
    assert content[0].token == content[0].top_logprobs[0].token  # greedy: the chosen token is the most likely


def test_error_bodies_are_openai_shaped_and_named(server):
    too_long = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "word " * 1500}],
        "max_tokens": 5,
    }
    with pytest.raises(ServerRefused) as refused:
        post_json(server.api_base, "/chat/completions", too_long, retries=0)
    assert refused.value.status == 400
    error = json.loads(refused.value.body)["error"]
    assert error["code"] == "context_length_exceeded" and "1024" in error["message"]
    with pytest.raises(ServerRefused) as missing:
        post_json(server.api_base, "/no-such-endpoint", {}, retries=0)
    assert missing.value.status == 404
    # through DSPy and litellm the same refusal surfaces as an exception naming the context limit, never a response
    with pytest.raises(Exception, match="context"):
        served_lm(server, max_tokens=5)("word " * 1500)


def test_the_target_program_runs_on_the_plain_text_path(server):
    target, adapter = make_target(server.model, 24, server.api_base, adapter="plain")
    assert isinstance(adapter, PlainTextAdapter)
    lm = target.copy(cache=False)
    with dspy.context(lm=lm, adapter=adapter):
        response = Assistant()(query="Give me one tip for a rainy afternoon.").response
    assert response.strip() and "[[ ##" not in response
    assert len(lm.history) == 1 and 0 < lm.history[-1]["usage"]["completion_tokens"] <= 24


def test_the_yes_no_judge_reads_the_servers_logprobs_like_the_embedded_judge(server):
    prompt, response = "How do I comfort a friend?", "Listen first, tell them the truth gently, and stay with them."
    served = yes_no_judge(served_lm(server)).judge(prompt, response, TWO_VALUES)
    local = embedded_judge().judge(prompt, response, TWO_VALUES)
    assert served.method == local.method == "yes-no-logprobs" and served.attempts == len(TWO_VALUES)
    for name in TWO_VALUES.names:
        assert 0.0 < served.probabilities[name] < 1.0
        # same weights (Q4_1 on the server, its de-quantised bf16 copy locally): measured differences are below 0.02
        assert abs(served.probabilities[name] - local.probabilities[name]) < 0.06


REQUESTS = [
    LikelihoodRequest("Be kind.", "How do I fix a flat tyre?", "Find the hole and patch it."),
    LikelihoodRequest("Be kind.", "How do I fix a flat tyre?", "I don't know."),
    LikelihoodRequest("Be brief.", "Hi", ""),
    LikelihoodRequest("Be brief.", "Say it in French.", "Très bien, merci ! 😀"),
]


def test_the_served_reference_model_gives_the_local_models_likelihoods_within_quantisation(server):
    served = ServedReferenceModel(server.model, server.api_base, fallback=None)
    served.load()
    assert served.backend == "server"
    meter = UsageMeter()
    remote, local = served.score(REQUESTS, meter), ReferenceModel("embedded").score(REQUESTS)
    # the three capability-check requests are counted too, at the first score()
    assert meter.role("reference").calls == 3 + len(REQUESTS) and meter.role("reference").input_tokens > 0
    assert [r.tokens for r in remote] == [r.tokens for r in local]  # the same response tokens are scored
    per_token = [abs(r.total - lo.total) / r.tokens for r, lo in zip(remote, local)]
    # measured: mean 0.05, max 0.17 nats per token (the emoji response: rare tokens are hit hardest by quantisation)
    assert max(per_token) < 0.3 and sum(per_token) / len(per_token) < 0.12
    assert all(math.isfinite(r.total) and r.total < 0 for r in remote)


def test_picaco_picks_the_same_instruction_with_the_served_or_the_local_reference(server, scripted_lm):
    def run(reference):
        metric = TotalCorrelationBound(
            ValueSet.builtin("liberalism-4"),
            judge=dspy_judge(scripted_lm),
            reference=reference,
            redundancy=RedundancyScorer(HashingEmbedder()),
        )
        program = compile_program(
            assistant_with("Answer the question."),
            metric,
            scripted_lm,
            valset=False,
            train=1,
            num_iterations=1,
            num_candidates=2,
            aligned_pool_size=1,
            noisy_pool_size=1,
            samples_per_prompt=1,
            noisy_samples_per_prompt=1,
        )
        return program.picaco_result

    served, local = run(ServedReferenceModel(server.model, server.api_base)), run(ReferenceModel("embedded"))
    assert served.final_instruction == local.final_instruction
    ranked = [c.instruction for c in sorted(served.iterations[0].candidates, key=lambda c: -c.J)]
    assert ranked == [c.instruction for c in sorted(local.iterations[0].candidates, key=lambda c: -c.J)]
    assert served.usage["reference"]["calls"] > 0


def dspy_judge(lm):
    from picaco_dspy import ValueJudge

    return ValueJudge(lm=lm)


def test_a_short_compile_runs_with_target_judge_and_reference_on_the_server(server, tmp_path):
    metric = TotalCorrelationBound(
        TWO_VALUES,
        judge=yes_no_judge(served_lm(server)),
        reference=ServedReferenceModel(server.model, server.api_base, max_response_tokens=12),
        redundancy=RedundancyScorer(HashingEmbedder()),
    )
    target, adapter = make_target(server.model, 12, server.api_base, adapter="plain")
    optimizer = PICACO(
        metric=metric,
        proposer=TemplateProposer(),
        num_iterations=1,
        num_candidates=2,
        aligned_pool_size=1,
        noisy_pool_size=1,
        noisy_samples_per_prompt=1,
        samples_per_prompt=1,
        progress=False,
        log_dir=tmp_path / "run",
    )
    train = [dspy.Example(query="How can I make new friends in a new city?").with_inputs("query")]
    with dspy.context(lm=target, adapter=adapter):
        aligned = optimizer.compile(Assistant(), trainset=train)
    result = aligned.picaco_result
    assert metric.reference.backend == "server"
    assert result.final_instruction in aligned.respond.signature.instructions
    usage = result.usage
    assert usage["target"]["calls"] == 2 and usage["target"]["output_tokens"] <= 2 * 12
    assert usage["judge"]["calls"] >= 2 * len(TWO_VALUES) and result.worker_usage["judge"]["failed_calls"] == 0
    assert usage["reference"]["calls"] >= 2 and usage["reference"]["input_tokens"] > 0
    assert all(math.isfinite(c.J) for c in result.iterations[0].candidates)


def test_picaco_compile_from_the_cli_against_the_server(server, tmp_path, capsys):
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text(
        "\n".join(json.dumps({"prompt": p}) for p in ["How do I make friends?", "Any tips for a rainy day?"])
    )
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(TWO_VALUES.to_dict()))
    out = tmp_path / "out"
    served = ["--api-base", server.api_base, "--adapter", "plain"]
    code = cli_main(
        ["compile", "--values", str(values_file), "--prompts", str(prompts_file), "--val-fraction", "0.5"]
        # the judge on the server is covered above; here the embedded one keeps the test short
        + ["--target", server.model, "--judge", "local", "--reference", "server", "--proposer", "template"]
        + served
        + ["--iterations", "1", "--candidates", "2", "--aligned-pool", "1", "--noisy-pool", "1"]
        + ["--noisy-samples", "1", "--samples", "1", "--max-tokens", "12", "--no-progress"]
        + ["--storage", str(tmp_path / "runs.db"), "--run", "served", "--out", str(out)]
    )
    captured = capsys.readouterr()
    stdout = captured.out
    assert code == 0, captured.err
    assert "Final instruction:" in stdout
    saved = json.loads((out / "run.json").read_text())
    assert saved["finished"] and saved["usage"]["reference"]["calls"] > 0
    assert (out / "program.json").is_file() and (out / "report.md").is_file()


def test_a_server_that_cannot_echo_falls_back_to_the_local_model(caplog):
    plain = llama_server(logits_all=False)
    reference = ServedReferenceModel(plain.model, plain.api_base)
    with caplog.at_level("WARNING"):
        reference.load()
    assert reference.backend == "fallback"
    assert "cannot echo" in reference.backend_reason and "logits_all" in reference.backend_reason
    assert "comes from the local model 'embedded'" in caplog.text
    scored = reference.score(REQUESTS[:2])
    assert scored == ReferenceModel("embedded").score(REQUESTS[:2])
    with pytest.raises(ConfigurationError, match="cannot give the log-likelihood"):
        ServedReferenceModel(plain.model, plain.api_base, fallback=None).load()
