"""DSPy's result conventions: runnable candidate programs best first in the metric's scale, a result that reads
back from run.json, lineage of every candidate, the per-value Pareto front, and programs with compiled parts."""

import json

import dspy
import pytest

from picaco_dspy.errors import ProgramError
from picaco_dspy.optimize.pareto import value_front
from picaco_dspy.optimize.program_edit import require_text_output
from picaco_dspy.optimize.proposer import TemplateProposer
from picaco_dspy.optimize.result import SCHEMA_VERSION, PICACOResult
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.scripted_world import compile_program, covers_all, prompts


@pytest.fixture
def aligned(scripted_metric, scripted_lm, tmp_path):
    return compile_program(Assistant(), scripted_metric, scripted_lm, log_dir=tmp_path / "log")


def test_candidate_programs_run_best_first_in_the_metrics_scale(aligned, scripted_metric, scripted_lm):
    result, candidates = aligned.picaco_result, aligned.candidate_programs
    assert candidates[0]["chosen"] and candidates[0]["program"] is aligned
    assert [c["instruction"] for c in candidates][0] == result.final_instruction
    selection = [c["selection_score"] for c in candidates]
    assert selection == sorted(selection, reverse=True)
    for candidate in candidates:
        assert 0.0 <= candidate["score"] <= 1.0 and candidate["score_source"] == "valset"
        assert candidate["score"] == pytest.approx(scripted_metric.normalise(candidate["selection_score"]))
        program = candidate["program"]
        assert candidate["instruction"] in program.respond.signature.instructions
        with dspy.context(lm=scripted_lm):
            assert program(query="What should I cook tonight?").response  # runnable, as dspy.Ensemble needs
    assert aligned.score == candidates[0]["score"]
    ensemble = dspy.Ensemble(reduce_fn=dspy.majority).compile([c["program"] for c in candidates[:3]])
    with dspy.context(lm=scripted_lm):
        assert ensemble(query="What should I cook tonight?").response


def test_without_a_valset_scores_come_from_the_training_samples(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, valset=False)
    result = aligned.picaco_result
    assert result.selection.on == "pools"
    sampled = {r.sampled_under for r in result.iterations}
    for candidate in aligned.candidate_programs:
        if candidate["instruction"] in sampled:
            assert 0.0 <= candidate["score"] <= 1.0 and candidate["score_source"] == "training samples"
        else:
            assert candidate["score"] is None and candidate["score_source"] is None  # never measured: no number


def test_the_result_reads_back_from_run_json(aligned, tmp_path):
    result = aligned.picaco_result
    loaded = PICACOResult.load(tmp_path / "log" / "run.json")
    assert loaded.to_dict() == json.loads(json.dumps(result.to_dict()))
    assert loaded.schema_version == SCHEMA_VERSION
    assert loaded.iterations[1].candidates[0].instruction == result.iterations[1].candidates[0].instruction
    assert loaded.lineage().keys() == result.lineage().keys()
    assert loaded.value_front() == result.value_front()

    older = result.to_dict()
    del older["schema_version"]
    for record in older["iterations"]:
        for candidate in record["candidates"]:
            for key in ("parent", "proposed_by", "temperature", "proposal_seed"):
                del candidate[key]
    assert PICACOResult.from_dict(older).final_instruction == result.final_instruction  # files of 0.1.0 read too

    newer = {**result.to_dict(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match="upgrade picaco-dspy"):
        PICACOResult.from_dict(newer)
    with pytest.raises(ValueError, match="Not a PICACO result"):
        PICACOResult.from_dict({"score": 1})


def test_every_candidate_knows_its_parent_iteration_and_how_it_was_made(aligned):
    result = aligned.picaco_result
    lineage = result.lineage()
    assert lineage[result.seed_instruction].origin == "seed"
    current = result.seed_instruction
    for record in result.iterations:
        for candidate in record.candidates:
            if candidate.origin == "proposed":
                assert candidate.parent == current  # proposed from the incumbent of its iteration
                assert candidate.proposed_by == "lm_proposal"
                assert candidate.temperature == record.settings["proposal_temperature"]
                assert candidate.proposal_seed is not None
            else:
                assert candidate.instruction == current and candidate.parent is None
        current = record.instruction
    chain = result.ancestry(result.final_instruction)
    assert chain[0] == result.seed_instruction and chain[-1] == result.final_instruction
    for child, parent in zip(chain[1:], chain[:-1]):
        assert lineage[child].parent == parent
    final = aligned.candidate_programs[0]
    assert final["parent"] == lineage[result.final_instruction].parent
    assert final["iteration"] == lineage[result.final_instruction].iteration


def test_template_proposals_are_marked_as_such(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, proposer=TemplateProposer(), num_iterations=2)
    proposed = [c for r in aligned.picaco_result.iterations for c in r.candidates if c.origin == "proposed"]
    assert proposed and {c.proposed_by for c in proposed} == {"template"}


def test_the_value_front_names_the_best_candidate_per_value_and_the_non_dominated():
    scores = {
        "a": {"care": 5.0, "truth": 2.0},
        "b": {"care": 3.0, "truth": 4.0},
        "c": {"care": 3.0, "truth": 3.0},  # dominated by b
        "d": {"care": 5.0, "truth": 2.0},  # ties a: neither dominates
        "e": {"care": 4.0},  # misses a value: left out
    }
    front = value_front("valset", scores, ["care", "truth"])
    assert front.best_per_value == {"care": ["a", "d"], "truth": ["b"]}
    assert front.non_dominated == ["a", "b", "d"]
    assert "e" not in front.scores


def test_the_runs_value_front_covers_the_final_candidates(aligned):
    result = aligned.picaco_result
    front = result.value_front()
    assert front.source == "valset" and set(front.scores) == set(result.selection.scores)
    assert set(front.best_per_value) == {"Universalism", "Self-direction", "Hedonism", "Stimulation"}
    assert result.final_instruction in front.non_dominated  # it covers every value in this world
    assert aligned.candidate_programs[0]["conformity"] == front.scores[result.final_instruction]


class WrapsACompiledModule(dspy.Module):
    """A program whose answer is written inside a sub-module that a few-shot optimiser compiled (DSPy freezes it)."""

    def __init__(self, inner: dspy.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, query: str) -> dspy.Prediction:
        return self.inner(query=query)


def test_programs_with_compiled_sub_modules_are_aligned_and_save_their_instruction(
    scripted_metric, scripted_lm, tmp_path
):
    answer = "Rest, then see a friend."
    demos = [dspy.Example(query=ex.query, response=answer).with_inputs("query") for ex in prompts(2)]
    few_shot = dspy.BootstrapFewShot(metric=None, max_bootstrapped_demos=1, max_labeled_demos=2)
    with dspy.context(lm=scripted_lm):
        inner = few_shot.compile(Assistant(), trainset=demos)
    assert inner._compiled and not list(WrapsACompiledModule(inner).named_predictors())  # what DSPy hides
    shots = [dict(d) for d in inner.respond.demos]
    aligned = compile_program(WrapsACompiledModule(inner), scripted_metric, scripted_lm)
    final = aligned.picaco_result.final_instruction
    assert covers_all(final) and aligned.picaco_result.predictor_names == ["inner.respond"]
    assert final in aligned.inner.respond.signature.instructions
    assert [dict(d) for d in aligned.inner.respond.demos] == shots and shots  # the few-shot demos survive
    assert inner._compiled and final not in inner.respond.signature.instructions  # the input is left as it was
    path = tmp_path / "wrapped.json"
    aligned.save(str(path))
    restored = WrapsACompiledModule(Assistant())
    restored.load(str(path))
    assert final in restored.inner.respond.signature.instructions and len(restored.inner.respond.demos) == len(shots)


class ClassifyThenTag(dspy.Module):
    """The last predictor writes a label, not the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict("query -> response")
        self.tag = dspy.Predict("response -> is_safe: bool")

    def forward(self, query: str) -> dspy.Prediction:
        response = self.respond(query=query).response
        return dspy.Prediction(response=response, is_safe=self.tag(response=response).is_safe)


def test_a_program_whose_last_predictor_writes_no_text_gets_told_which_do(scripted_metric, scripted_lm):
    with pytest.raises(ProgramError, match=r"Predictors that write text: \['respond'\].*predictor_names=\['respond'\]"):
        compile_program(ClassifyThenTag(), scripted_metric, scripted_lm)
    require_text_output(ClassifyThenTag(), "respond")  # the choice the message suggests passes the check


def test_the_report_shows_the_front_and_the_lineage_of_the_final_candidates(aligned):
    from picaco_dspy.evaluation.report import markdown_report

    result = aligned.picaco_result
    report = markdown_report(result)
    section = report.split("## Final candidates")[1].split("## Cost")[0]
    rows = [line for line in section.splitlines() if line.startswith("| C")]
    assert len(rows) == len(result.selection.scores)
    chosen = [row for row in rows if "| yes | iteration" in row or row.split("|")[-3].strip() == "yes"]
    assert len(chosen) == 1 and "| yes |" in chosen[0]  # the chosen one is on the front in this world
    front = result.value_front()
    assert section.count("*") >= len(front.best_per_value)
    seedless = [row for row in rows if "lm_proposal" in row]
    assert all(", from C" in row or "from an earlier instruction" in row for row in seedless)


def test_a_valset_the_judge_cannot_score_falls_back_to_the_pools_instead_of_raising(liberalism):
    from picaco_dspy.testing.scripted_world import ScriptedEngine, scripted_metric

    engine = ScriptedEngine(fail_judge_for="day number 10")  # every valset prompt (100-102), no training prompt
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    aligned = compile_program(Assistant(), scripted_metric(lm, judge_retries=0), lm, num_iterations=2)
    selection = aligned.picaco_result.selection
    assert selection.on == "pools" and all(n == 3 for n in selection.failed.values())
    assert covers_all(aligned.picaco_result.final_instruction)  # the pools still find the optimum
