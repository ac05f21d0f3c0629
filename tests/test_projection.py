"""Cost before spending: ``PICACO.estimate`` and ``picaco compile --dry-run`` project calls, tokens and USD per role
without calling or loading any model, and the projection agrees with what a run then spends."""

import contextlib
from unittest import mock

import dspy
import litellm
import pytest

from picaco_dspy import PICACO, PlainTextAdapter, TemplateProposer, embedded_lm, embedded_metric
from picaco_dspy.cli import main
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.cli_probe import ModelTouched, probe
from picaco_dspy.testing.scripted_world import SETTINGS, ScriptedEngine, prompts, scripted_metric
from tests.test_cli import small_compile

SMALL = {**SETTINGS, "num_iterations": 2, "storage": None}  # 4 prompts, 3 held out: about 90 calls
LM_ROLES = ("target", "judge", "proposer")
FENCE = (  # every way a model gets loaded or called
    "transformers.AutoModelForCausalLM.from_pretrained",
    "transformers.AutoModel.from_pretrained",
    "transformers.AutoTokenizer.from_pretrained",
    "picaco_dspy.models.loading.load_causal_lm",
    "picaco_dspy.models.engine.load_causal_lm",
    "picaco_dspy.models.engine.TransformersEngine.complete",
    "litellm.completion",
    "litellm.acompletion",
)


@contextlib.contextmanager
def models_fenced():
    """Any model load or LM call inside raises ModelTouched (a BaseException: nothing in the library swallows it)."""
    with contextlib.ExitStack() as stack:
        for target in FENCE:
            stack.enter_context(mock.patch(target, side_effect=ModelTouched(target)))
        yield


def dry_run_args(folder, *extra):
    """A small compile of the embedded model (tests/test_cli.py's), fixed at 2 iterations, as a dry run."""
    return small_compile(folder, "--iterations", "2", "--dry-run", *extra)


def test_projected_calls_match_what_a_scripted_run_spends(scripted_lm, scripted_metric, engine):
    optimizer = PICACO(metric=scripted_metric, prompt_model=scripted_lm, **SMALL)
    train, val = prompts(4), prompts(3, offset=100)
    with dspy.context(lm=scripted_lm):
        projection = optimizer.estimate(Assistant(), train, val)
        assert not engine.calls  # nothing was paid for the projection
        aligned = optimizer.compile(Assistant(), trainset=train, valset=val)
    result = aligned.picaco_result
    usage = result.usage
    for role in LM_ROLES:
        projected, actual = projection.roles[role], usage[role]
        assert actual["calls"] > 0 and abs(projected.calls - actual["calls"]) <= 0.25 * actual["calls"], role
        # The scripted engine counts words, not tokens, and answers far below the 512-token cap, so its token counts
        # cannot be matched within 25 %; the projection (responses at their cap) must bound them instead.
        assert projected.input_tokens >= actual["input_tokens"] and projected.output_tokens >= actual["output_tokens"]
    assert projection.phases["noisy-pool"]["target"].calls == result.noisy_pool["sampled"] == 4 * 4
    assert projection.iterations == len(result.iterations) == 2
    assert projection.phases["iteration-1"]["proposer"].calls == 4 and projection.roles["reference"].calls > 0
    assert result.selection.on == "valset" and projection.phases["selection"]["target"].calls == 3 * 4


def test_a_steered_schedule_is_projected_at_its_most(scripted_lm, scripted_metric, engine):
    optimizer = PICACO(
        metric=scripted_metric, prompt_model=scripted_lm, auto="light", num_threads=1, progress=False, storage=None
    )
    train = prompts(4)
    with dspy.context(lm=scripted_lm):
        projection = optimizer.estimate(Assistant(), train)
        aligned = optimizer.compile(Assistant(), trainset=train)
    assert projection.upper_bound and projection.iterations == 4 and "upper bound" in projection.format_table()
    assert projection.val_prompts == 0 and projection.phases["selection"]["target"].calls == 0
    last = projection.phases["iteration-4"]  # light allows up to 2 samples per prompt and 4 candidates per step
    assert last["target"].calls == 4 * 2 and last["proposer"].calls == 4
    for role in LM_ROLES:
        assert projection.roles[role].calls >= aligned.picaco_result.usage[role]["calls"] > 0, role
    paper = projection.paper
    assert paper is not None and not paper.upper_bound and paper.iterations == 10
    assert paper.phases["noisy-pool"]["target"].calls == 4 * 30 and paper.lm.calls > projection.lm.calls


def test_estimate_calls_no_lm_and_loads_no_model():
    metric = embedded_metric("liberalism-4")  # the real embedded judge, reference and embeddings, all lazy
    optimizer = PICACO(metric=metric, proposer=TemplateProposer(), num_iterations=1, noisy_pool_size=1, storage=None)
    lm = embedded_lm(max_tokens=80)
    with models_fenced(), dspy.context(lm=lm, adapter=PlainTextAdapter()):
        projection = optimizer.estimate(Assistant(), prompts(3), prompts(2, offset=10))
    assert metric.reference._model is None  # never loaded
    assert projection.models["target"].startswith("local/") and projection.models["proposer"] == "template (no LM)"
    assert projection.roles["proposer"].calls == 0 and projection.roles["judge"].calls > 0
    assert projection.usd == 0.0  # in-process models are free
    scripted = ScriptedEngine()
    scripted_lm = dspy.LM("scripted/world", engine=scripted, max_tokens=200)
    scripted_optimizer = PICACO(metric=scripted_metric(scripted_lm), prompt_model=scripted_lm, **SMALL)
    with models_fenced(), dspy.context(lm=scripted_lm):
        scripted_optimizer.estimate(Assistant(), prompts(4), prompts(3, offset=100))
    assert not scripted.calls and scripted_optimizer.metric.reference.calls == 0


def test_dry_run_prints_both_schedules_touches_no_model_and_writes_nothing(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"  # tmp_path itself holds the test's DSPy cache
    work.mkdir()
    probed = probe(dry_run_args(work), work)  # the CLI probe's own fence and file listing
    assert probed.exit_code == 0 and not probed.model_touches and not probed.files_written and not probed.traceback
    monkeypatch.chdir(work)
    monkeypatch.setenv("PICACO_STORAGE", str(work / "runs.db"))
    with models_fenced():
        code = main(dry_run_args(work, "--budget", "20"))
    out = capsys.readouterr().out
    assert code == 0 and list(work.iterdir()) == []
    assert "this run: fixed: T=2" in out and "paper schedule: fixed: T=10" in out and "M2=15" in out
    for role in ("target", "judge", "proposer", "reference"):
        assert f"\n{role} " in out
    assert "local/smollm2" in out and "Dry run" in out
    assert "Budget: " in out and "max_lm_calls=20" in out and "compile refuses to start" in out


def test_dry_run_is_refused_for_baselines(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(dry_run_args(tmp_path, "--method", "OPRO"))
    err = capsys.readouterr().err
    assert code == 2 and "--dry-run apply to PICACO only" in err and err.count("\n") == 1


def test_usd_is_tokens_times_litellm_price(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the price table shipped with litellm, no network
    lm = dspy.LM("openai/gpt-4o-mini", engine=ScriptedEngine(), max_tokens=300)
    optimizer = PICACO(metric=scripted_metric(lm), prompt_model=lm, **SMALL)
    with dspy.context(lm=lm):
        projection = optimizer.estimate(Assistant(), prompts(4), prompts(3, offset=100))
    for role in LM_ROLES:
        p = projection.roles[role]
        prices = litellm.cost_per_token(
            model="openai/gpt-4o-mini", prompt_tokens=p.input_tokens, completion_tokens=p.output_tokens
        )
        assert p.input_tokens > 0 and p.usd is not None and p.usd > 0
        assert p.usd == pytest.approx(sum(prices), rel=1e-9), role
    assert projection.roles["reference"].usd == 0.0
    assert projection.usd == pytest.approx(sum(projection.roles[r].usd for r in LM_ROLES))
    assert projection.paper is not None and projection.paper.usd > projection.usd
    assert f"${projection.usd:.4f}" in projection.format_table()

    unpriced = dspy.LM("openai/no-such-model-picaco", engine=ScriptedEngine(), max_tokens=300)
    optimizer = PICACO(metric=scripted_metric(lm), prompt_model=unpriced, **SMALL)
    with dspy.context(lm=lm):
        projection = optimizer.estimate(Assistant(), prompts(4))
    assert projection.roles["proposer"].usd is None and projection.roles["judge"].usd is not None
    assert projection.usd is None and "no price" in projection.format_table()
    assert projection.to_dict()["roles"]["proposer"]["usd"] is None
