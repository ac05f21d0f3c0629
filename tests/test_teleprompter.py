import json

import dspy
import pytest

from picaco_dspy import PICACO, ConfigurationError, RedundancyScorer, TotalCorrelationBound, ValueJudge
from picaco_dspy.errors import ProgramError
from picaco_dspy.objective.redundancy import HashingEmbedder
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.programs.draft_and_revise import DraftAndRevise
from picaco_dspy.testing.scripted_world import (
    SETTINGS,
    ScriptedEngine,
    ScriptedReference,
    compile_program,
    covers_all,
    prompts,
)


@pytest.fixture
def aligned(scripted_metric, scripted_lm):
    return compile_program(Assistant(), scripted_metric, scripted_lm)


def test_ends_on_an_instruction_covering_every_value(aligned):
    result = aligned.picaco_result
    assert covers_all(result.final_instruction)
    assert not covers_all(result.seed_instruction)
    assert result.final_instruction in aligned.respond.signature.instructions


def test_raises_the_mean_reward_over_the_seed(aligned):
    result = aligned.picaco_result
    seed, final = result.seed_instruction, result.final_instruction
    assert result.selection.on == "valset"
    assert result.selection.scores[final] > result.selection.scores[seed]
    table = result.conformity_table()
    assert min(table["final"].values()) > min(table["seed"].values())
    assert result.iterations[-1].mean_reward > result.iterations[0].mean_reward
    assert result.iterations[-1].J >= result.iterations[0].J  # the current instruction always competes


def test_j_never_decreases_within_an_iteration(aligned):
    for record in aligned.picaco_result.iterations:
        current = [c for c in record.candidates if c.origin == "current"][0]
        assert record.J >= current.J
        assert [c.J for c in record.candidates] == sorted((c.J for c in record.candidates), reverse=True)


def test_student_is_left_unchanged(scripted_metric, scripted_lm):
    student = Assistant()
    before = student.respond.signature.instructions
    compile_program(student, scripted_metric, scripted_lm)
    assert student.respond.signature.instructions == before
    assert student.respond.lm is None


def test_save_and_load_keep_the_new_instruction(aligned, tmp_path):
    path = tmp_path / "aligned.json"
    aligned.save(str(path))
    restored = Assistant()
    restored.load(str(path))
    assert restored.respond.signature.instructions == aligned.respond.signature.instructions
    assert aligned.picaco_result.final_instruction in restored.respond.signature.instructions


def test_reported_calls_equal_what_the_engine_saw(scripted_lm, engine, liberalism):
    reference = ScriptedReference()
    metric = TotalCorrelationBound(
        liberalism,
        judge=ValueJudge(lm=scripted_lm),
        reference=reference,
        redundancy=RedundancyScorer(HashingEmbedder()),
    )
    aligned = compile_program(Assistant(), metric, scripted_lm)
    usage = aligned.picaco_result.usage
    for role in ("target", "judge", "proposer"):
        assert usage[role]["calls"] == engine.calls[role] > 0, role
        assert usage[role]["input_tokens"] + usage[role]["output_tokens"] == engine.tokens[role]
    assert usage["reference"]["calls"] == reference.calls > 0
    assert usage["reference"]["input_tokens"] == reference.tokens


def test_result_records_every_iteration_and_is_json(aligned):
    result = aligned.picaco_result
    assert len(result.iterations) == SETTINGS["num_iterations"]
    assert (
        result.seed_J
        == result.iterations[0].candidates[[c.origin for c in result.iterations[0].candidates].index("current")].J
    )
    record = result.iterations[0]
    assert record.sampled_under == result.seed_instruction
    assert set(record.conformity) == {"Universalism", "Self-direction", "Hedonism", "Stimulation"}
    assert record.new_responses == 4 * SETTINGS["samples_per_prompt"]
    json.dumps(result.to_dict())
    json.dumps([{k: v for k, v in c.items() if k != "program"} for c in aligned.candidate_programs])
    scores = [c["score"] for c in aligned.candidate_programs]
    assert scores == sorted(scores, reverse=True) and aligned.candidate_programs[0]["chosen"]


def test_two_predictor_program_gets_the_instruction_on_both(scripted_metric, scripted_lm):
    aligned = compile_program(DraftAndRevise(), scripted_metric, scripted_lm)
    final = aligned.picaco_result.final_instruction
    assert covers_all(final)
    assert final in aligned.draft.signature.instructions and final in aligned.revise.signature.instructions
    assert aligned.picaco_result.predictor_names == ["draft", "revise"]


def test_predictor_names_select_the_edited_predictors(scripted_metric, scripted_lm):
    aligned = compile_program(
        DraftAndRevise(), scripted_metric, scripted_lm, predictor_names=["revise"], num_iterations=2
    )
    final = aligned.picaco_result.final_instruction
    assert final in aligned.revise.signature.instructions
    assert final not in aligned.draft.signature.instructions
    with pytest.raises(ProgramError, match="Unknown predictor"):
        compile_program(DraftAndRevise(), scripted_metric, scripted_lm, predictor_names=["polish"])


def test_rerunning_the_same_compile_replays_the_stored_run_without_new_calls(scripted_metric, scripted_lm, engine):
    first = compile_program(Assistant(), scripted_metric, scripted_lm).picaco_result
    calls_after_first = sum(engine.calls.values())
    dspy.cache.reset_memory_cache()
    second = compile_program(Assistant(), scripted_metric, scripted_lm).picaco_result
    assert sum(engine.calls.values()) == calls_after_first  # everything came from the run storage
    assert second.run_name == first.run_name and second.executed_jobs == 0 and second.reused_results > 0
    assert second.final_instruction == first.final_instruction
    assert [r.J for r in second.iterations] == [r.J for r in first.iterations]
    assert second.usage == first.usage  # the ledger: what the run paid, once
    assert all(second.worker_usage[role]["calls"] == 0 for role in ("target", "judge", "proposer", "reference"))


def test_same_seed_with_an_empty_cache_gives_the_same_result(scripted_metric, tmp_path):
    results = []
    for run in range(2):
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / f"c{run}"))
        dspy.cache.reset_memory_cache()
        lm = dspy.LM("scripted/world", engine=ScriptedEngine(), temperature=1.0, max_tokens=512)
        metric = TotalCorrelationBound(
            scripted_metric.values,
            judge=ValueJudge(lm=lm),
            reference=ScriptedReference(),
            redundancy=RedundancyScorer(HashingEmbedder()),
        )
        results.append(compile_program(Assistant(), metric, lm, storage=str(tmp_path / f"runs{run}.db")).picaco_result)
    assert results[1].executed_jobs == results[0].executed_jobs > 0  # the second run paid for everything again
    assert results[0].final_instruction == results[1].final_instruction
    assert [r.J for r in results[0].iterations] == [r.J for r in results[1].iterations]


def test_failed_judgements_are_counted_and_kept_out_of_the_pools(liberalism, tmp_path):
    engine = ScriptedEngine(fail_judge_for="Good luck.")
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    metric = TotalCorrelationBound(
        liberalism,
        judge=ValueJudge(lm=lm, max_retries=0),
        reference=ScriptedReference(),
        redundancy=RedundancyScorer(HashingEmbedder()),
    )
    aligned = compile_program(Assistant(), metric, lm, log_dir=tmp_path / "run")
    result = aligned.picaco_result
    assert sum(r.failed_rollouts for r in result.iterations) > 0
    pools = json.loads((tmp_path / "run" / "pools.json").read_text())
    pooled = [p["response"] for pool in pools for p in pool["aligned"] + pool["noisy"]]
    assert pooled and not any("Good luck." in text for text in pooled)


def test_log_dir_holds_the_run_the_pools_and_the_program(scripted_metric, scripted_lm, tmp_path):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, log_dir=tmp_path / "log", valset=False)
    run = json.loads((tmp_path / "log" / "run.json").read_text())
    assert run["finished"] and run["final_instruction"] == aligned.picaco_result.final_instruction
    assert run["selection"]["on"] == "pools" and len(run["iterations"]) == SETTINGS["num_iterations"]
    restored = Assistant()
    restored.load(str(tmp_path / "log" / "program.json"))
    assert restored.respond.signature.instructions == aligned.respond.signature.instructions


def test_bad_arguments_are_refused_with_the_fix(scripted_metric, scripted_lm, liberalism):
    optimizer = PICACO(metric=scripted_metric, prompt_model=scripted_lm, progress=False)
    with pytest.raises(ConfigurationError, match="teacher must be a DSPy program"):
        optimizer.compile(Assistant(), trainset=prompts(2), teacher="gpt-4o")
    with pytest.raises(ConfigurationError, match="empty"):
        optimizer.compile(Assistant(), trainset=[])
    with pytest.raises(ConfigurationError, match="with_inputs"):
        optimizer.compile(Assistant(), trainset=[dspy.Example(query="no inputs marked")])
    with pytest.raises(ConfigurationError, match="not a dspy.Example"):
        optimizer.compile(Assistant(), trainset=["a plain string"])
    with pytest.raises(ProgramError, match="no predictors"):
        optimizer.compile(dspy.Module(), trainset=prompts(2))
    with pytest.raises(ConfigurationError, match="reference model"):
        PICACO(metric=TotalCorrelationBound(liberalism, judge=ValueJudge(), redundancy=None))
    with pytest.raises(ConfigurationError, match="TotalCorrelationBound"):
        PICACO(metric=lambda gold, pred: 1.0)
    for bad in (
        {"num_iterations": 0},
        {"num_candidates": 1.5},
        {"response_temperature": 0},
        {"seed": -1},
        {"noisy_samples_per_prompt": 1, "noisy_pool_size": 3},
        {"samples_per_prompt": 5000},
    ):
        with pytest.raises(ConfigurationError):
            PICACO(metric=scripted_metric, **bad)


def test_missing_target_lm_is_reported(scripted_metric, scripted_lm):
    optimizer = PICACO(metric=scripted_metric, prompt_model=scripted_lm, **SETTINGS)
    with dspy.context(lm=None), pytest.raises(ConfigurationError, match="dspy.configure"):
        optimizer.compile(Assistant(), trainset=prompts(2))


class CrashingReference(ScriptedReference):
    """Reference scorer that raises on its ``crash_at``-th call, like a process killed mid-run."""

    def __init__(self, crash_at):
        super().__init__()
        self.crash_at = crash_at
        self.score_calls = 0

    def score(self, requests, usage=None):
        self.score_calls += 1
        if self.score_calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        return super().score(requests, usage)


def test_a_rerun_after_a_crash_pays_only_for_what_was_not_done(liberalism, tmp_path):
    """Kill a run half-way, start it again on the same cache: no request served before the kill reaches the engine."""

    def run(reference):
        dspy.cache.reset_memory_cache()  # a new process starts with an empty memory cache
        paid = set()
        put = dspy.cache.put

        def recording_put(request, value, *args, **kwargs):  # DSPy stores exactly the calls that reached the engine
            paid.add(dspy.cache.cache_key(request, *args[:1]))
            return put(request, value, *args, **kwargs)

        dspy.cache.put = recording_put
        engine = ScriptedEngine()
        lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
        metric = TotalCorrelationBound(
            liberalism, judge=ValueJudge(lm=lm), reference=reference, redundancy=RedundancyScorer(HashingEmbedder())
        )
        try:
            result = compile_program(Assistant(), metric, lm).picaco_result
        except KeyboardInterrupt:
            result = None
        finally:
            dspy.cache.put = put
        assert len(paid) == sum(engine.calls.values())
        return result, paid

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / "cache"))
    crashed, paid_before = run(CrashingReference(crash_at=7))
    resumed, paid_after = run(ScriptedReference())
    assert crashed is None and paid_before and paid_after
    assert not paid_before & paid_after  # nothing already paid for was requested again
    # the noisy pool and iteration 1 were finished before the kill (in iteration 2): they cost nothing the second time
    first = resumed.iterations[0].usage
    assert first["target"]["calls"] == first["judge"]["calls"] == first["proposer"]["calls"] == 0
    assert resumed.usage["target"]["calls"] > 0
    assert covers_all(resumed.final_instruction)


@pytest.mark.parametrize("weighting", ["raw", "pmi", "importance"])
def test_every_likelihood_weighting_finds_the_covering_instruction(scripted_lm, liberalism, weighting):
    metric = TotalCorrelationBound(
        liberalism,
        judge=ValueJudge(lm=scripted_lm),
        reference=ScriptedReference(),
        redundancy=RedundancyScorer(HashingEmbedder()),
        likelihood_weighting=weighting,
    )
    assert covers_all(compile_program(Assistant(), metric, scripted_lm).picaco_result.final_instruction)


def test_final_selection_puts_the_best_instructions_and_the_seed_on_the_valset(aligned):
    result = aligned.picaco_result
    last_round = {c.instruction for c in result.iterations[-1].candidates}
    chosen = {result.seed_instruction} | {r.instruction for r in result.iterations}
    contenders = set(result.selection.scores)
    assert result.seed_instruction in contenders and contenders <= chosen | last_round
    assert len(contenders) >= min(SETTINGS.get("final_candidates", 3), len(chosen | last_round))
    assert result.final_instruction == max(contenders, key=lambda t: result.selection.scores[t])


def test_budget_stops_cleanly_and_keeps_the_best_so_far(scripted_metric, scripted_lm):
    # 4 prompts: noisy pool 4x4 runs + 8 judgements = 24 calls; an iteration 4x2 runs + 8 judgements + 4 proposals = 20
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, max_lm_calls=70)
    result = aligned.picaco_result
    spent = sum(result.usage[r]["calls"] for r in ("target", "judge", "proposer"))
    assert result.budget_stopped and len(result.iterations) == 2 and spent <= 70
    assert result.selection.on == "pools"  # the valset selection (up to 24 calls) no longer fits
    assert result.final_instruction in {c.instruction for r in result.iterations for c in r.candidates}


def test_several_threads_give_the_same_run_as_one(scripted_metric, tmp_path):
    """Samples are seeded per request (rollout id), pools are ordered by content, and the meter and stores are
    locked: the order in which threads finish cannot change the outcome."""
    outcomes = []
    for threads in (1, 6):
        dspy.configure_cache(
            enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / f"cache{threads}")
        )
        dspy.cache.reset_memory_cache()
        engine = ScriptedEngine()
        lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
        metric = TotalCorrelationBound(
            scripted_metric.values,
            judge=ValueJudge(lm=lm),
            reference=ScriptedReference(),
            redundancy=RedundancyScorer(HashingEmbedder()),
        )
        result = compile_program(
            Assistant(), metric, lm, num_threads=threads, storage=None, log_dir=tmp_path / f"log{threads}"
        ).picaco_result
        pools = json.loads((tmp_path / f"log{threads}" / "pools.json").read_text())
        outcomes.append((result, pools, dict(engine.calls)))
    (one, pools_one, calls_one), (many, pools_many, calls_many) = outcomes
    assert many.final_instruction == one.final_instruction
    assert [r.J for r in many.iterations] == [r.J for r in one.iterations]
    assert [[c.instruction for c in r.candidates] for r in many.iterations] == [
        [c.instruction for c in r.candidates] for r in one.iterations
    ]
    assert pools_many == pools_one and many.selection.scores == one.selection.scores
    assert calls_many == calls_one and many.usage == one.usage
