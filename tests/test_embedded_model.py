"""Real end-to-end checks on the embedded SmolLM2-135M-Instruct model (CPU, about a minute in all)."""

import json
import math

import dspy
import pytest

from picaco_dspy import PICACO, PlainTextAdapter, RedundancyScorer, ReferenceModel, ValueSet
from picaco_dspy.models.embedded import embedded_judge, embedded_lm, embedded_metric
from picaco_dspy.objective.reference import LikelihoodRequest
from picaco_dspy.programs.assistant import Assistant

pytestmark = pytest.mark.embedded

REQUESTS = [
    LikelihoodRequest(
        "Be kind and curious.", "What should I do this weekend?", "Go hiking with friends and try a new trail!"
    ),
    LikelihoodRequest("Be kind and curious.", "What should I do this weekend?", "Stay home."),
    LikelihoodRequest(
        "Be kind and curious.",
        "What should I do this weekend?",
        "Visit a museum, cook something new, or call a friend.",
    ),
    LikelihoodRequest("Answer briefly.", "Capital of France?", "Paris."),
]


def test_shared_prefix_batched_and_one_by_one_scores_agree():
    shared = ReferenceModel("embedded", share_prefix=True, batch_size=8).score(REQUESTS)
    full = ReferenceModel("embedded", share_prefix=False, batch_size=8).score(REQUESTS)
    single = [ReferenceModel("embedded", share_prefix=False, batch_size=1).score([r])[0] for r in REQUESTS]
    for a, b, c in zip(shared, full, single):
        assert a.tokens == b.tokens == c.tokens > 0
        assert a.total == pytest.approx(b.total, abs=1e-3) and b.total == pytest.approx(c.total, abs=1e-3)
        assert a.total < 0


def test_instruction_changes_the_likelihood():
    reference = ReferenceModel("embedded")
    response = "Paris is the capital of France."
    relevant, other = reference.score(
        [
            LikelihoodRequest("Answer geography questions.", "Capital of France?", response),
            LikelihoodRequest("Answer geography questions.", "Best pizza topping?", response),
        ]
    )
    assert relevant.mean > other.mean


def test_embedded_embeddings_flag_parroting():
    values = ValueSet.builtin("liberalism-4")
    scorer = RedundancyScorer("embedded")
    parrot, plain = scorer.probability(
        values.observation_text(),
        [
            "My values are Universalism, Self-direction, Hedonism and Stimulation: tolerance, independent choice, "
            "pleasure and novelty.",
            "Paris is the capital of France.",
        ],
    )
    assert parrot > plain + 0.2


def test_local_sampling_is_reproducible_from_an_empty_cache(tmp_path):
    texts = []
    for _ in range(2):
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        lm = embedded_lm(temperature=1.0, max_tokens=12)
        texts.append(lm("Name a fruit.")[0])
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / "c"))
    assert texts[0] == texts[1] and texts[0].strip()


def test_yes_no_judge_reads_probabilities(caplog, monkeypatch):
    from picaco_dspy.models import embedded

    monkeypatch.setattr(embedded, "_WARNED", type(embedded._WARNED)())  # as in a fresh process
    with caplog.at_level("WARNING", logger="picaco_dspy.models.embedded"):
        embedded_judge()
        embedded_judge()
    warnings = [r.getMessage() for r in caplog.records if r.name == "picaco_dspy.models.embedded"]
    assert len(warnings) == 1 and "no better than chance" in warnings[0]  # said once, not per judge
    judgement = embedded_judge().judge(
        "What should I do this weekend?", "Go hiking and try a new trail!", ValueSet.builtin("liberalism-4")
    )
    assert judgement.method == "yes-no-logprobs"
    for name, q in judgement.probabilities.items():
        assert 0.1 <= q <= 0.9 and 1 <= judgement.conformity[name] <= 5


def test_picaco_runs_end_to_end_on_the_embedded_model(tmp_path):
    train = [
        dspy.Example(query=q).with_inputs("query")
        for q in ["What should I do this weekend?", "How can I make new friends in a new city?"]
    ]
    student = Assistant()
    before = student.respond.signature.instructions
    optimizer = PICACO(
        metric=embedded_metric("liberalism-4", max_response_tokens=48),
        prompt_model=embedded_lm(temperature=1.0, max_tokens=48),
        num_iterations=1,
        num_candidates=2,
        aligned_pool_size=2,
        noisy_pool_size=1,
        noisy_samples_per_prompt=2,
        samples_per_prompt=1,
        num_threads=1,
        progress=False,
        log_dir=tmp_path / "run",
    )
    with dspy.context(lm=embedded_lm(max_tokens=48), adapter=PlainTextAdapter()):
        aligned = optimizer.compile(student, trainset=train)
        answer = aligned(query="Any tips for a rainy afternoon?").response
    result = aligned.picaco_result
    assert student.respond.signature.instructions == before
    assert result.final_instruction in aligned.respond.signature.instructions
    assert answer.strip()
    usage = result.usage
    assert usage["target"]["calls"] == 2 * 2 + 2 * 1  # noisy pool samples + one Response Enhancement round
    assert usage["judge"]["calls"] >= 2 * 1 * 4 + 2 * 1 * 4  # judged responses x 4 values (retries add more)
    assert usage["proposer"]["calls"] == 2
    assert usage["reference"]["input_tokens"] > 0
    assert all(math.isfinite(c.J) for c in result.iterations[0].candidates)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["finished"] and saved["usage"] == usage


def judge_on(engine):
    from picaco_dspy.models.embedded import yes_no_judge

    return yes_no_judge(dspy.LM("local/embedded", engine=engine, cache=False))


def test_the_yes_no_questions_of_one_response_share_one_prefill_with_the_same_probabilities():
    from picaco_dspy.models.engine import TransformersEngine

    values = ValueSet.builtin("liberalism-4")
    cases = [
        ("What should I do this weekend?", "Go hiking with friends and try a new trail!"),
        ("How do I learn to cook?", "Start with three simple dishes and cook each one twice."),
    ]
    fresh, shared = TransformersEngine("embedded", reuse_prefix=False), TransformersEngine("embedded")
    once = [judge_on(fresh).judge(p, r, values) for p, r in cases]
    reused = [judge_on(shared).judge(p, r, values) for p, r in cases]
    for a, b in zip(once, reused):
        for name in values.names:
            assert a.probabilities[name] == pytest.approx(b.probabilities[name], abs=1e-4)
    assert shared.prefill_tokens < 0.5 * fresh.prefill_tokens  # the K questions re-read only the value and question


def test_sampled_requests_never_reuse_the_prefix_cache():
    from picaco_dspy.models.engine import TransformersEngine

    engine = TransformersEngine("embedded")
    lm = dspy.LM("local/embedded", engine=engine, temperature=1.0, max_tokens=4, cache=False)
    with dspy.context(adapter=PlainTextAdapter()):
        predict = dspy.Predict("query -> response")
        for seed in (1, 2):
            predict(query="Name a colour.", lm=lm, config={"seed": seed})
    assert engine._last is None
    lengths = [e["usage"]["prompt_tokens"] for e in lm.history]
    assert engine.prefill_tokens == sum(lengths)  # every prompt token was run: nothing reused


def test_the_rating_reading_is_the_models_digit_distribution_at_the_answer_position():
    import torch

    from picaco_dspy.objective.value_readings import _RATER_SYSTEM, RatingLikelihood

    reference = ReferenceModel("embedded", max_response_tokens=64)
    reader = RatingLikelihood(reference)
    values = ValueSet.builtin("liberalism-4")
    prompt, response = "What should I do this weekend?", "Go hiking with friends and try a new trail!"
    scores = reader.scores(prompt, response, values)
    tokenizer, model = reference._tokenizer, reference._model
    digit_ids = [tokenizer(d, add_special_tokens=False).input_ids for d in "12345"]
    assert all(len(ids) == 1 for ids in digit_ids)  # each answer is one token: the reading is one position
    for value in values:
        ids = reference._prefix_ids(_RATER_SYSTEM, RatingLikelihood._user(prompt, response, value))
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        p = torch.softmax(logits[[i[0] for i in digit_ids]], dim=0)
        assert scores[value.name] == pytest.approx(float((p * torch.arange(1, 6)).sum()), abs=1e-3)
