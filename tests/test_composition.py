"""PICACO composed with DSPy's other optimisers, in both orders, in the scripted world."""

import dspy
import pytest

from picaco_dspy import ConfigurationError
from picaco_dspy.composition import KeepValueInstruction, restore_meta_instruction
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.teleprompter import PICACO
from picaco_dspy.testing.scripted_world import SETTINGS, compile_program, covers_all, prompts

SMALL = {**SETTINGS, "num_iterations": 2}


def labelled(n: int, offset: int = 0) -> list[dspy.Example]:
    return [
        dspy.Example(query=ex.query, response="Take a walk, then call a friend.").with_inputs("query")
        for ex in prompts(n, offset)
    ]


def test_few_shot_before_picaco_keeps_its_demos(scripted_metric, scripted_lm):
    with dspy.context(lm=scripted_lm):
        shots = dspy.LabeledFewShot(k=2).compile(Assistant(), trainset=labelled(2, offset=50))
    aligned = compile_program(shots, scripted_metric, scripted_lm, num_iterations=2)
    assert [dict(d) for d in aligned.respond.demos] == [dict(d) for d in shots.respond.demos]
    assert aligned.picaco_result.final_instruction in aligned.respond.signature.instructions


def test_few_shot_after_picaco_keeps_the_meta_instruction(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)
    bootstrap = dspy.BootstrapFewShot(metric=None, max_bootstrapped_demos=1, max_labeled_demos=1)
    with dspy.context(lm=scripted_lm):
        shots = bootstrap.compile(aligned, trainset=labelled(2, offset=50))
    assert shots.respond.demos
    assert shots.respond.signature.instructions == aligned.respond.signature.instructions


def copro(metric):
    return dspy.COPRO(metric=metric, breadth=2, depth=1, init_temperature=1.0)


def test_copro_after_picaco_keeps_the_meta_instruction_when_wrapped(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)
    meta = aligned.picaco_result.final_instruction
    with dspy.context(lm=scripted_lm):
        kept = KeepValueInstruction(copro(scripted_metric)).compile(
            aligned, trainset=prompts(3, offset=200), eval_kwargs={}
        )
    assert meta in kept.respond.signature.instructions


def test_miprov2_after_picaco_keeps_the_meta_instruction_when_wrapped(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)
    meta = aligned.picaco_result.final_instruction
    mipro = dspy.MIPROv2(
        metric=scripted_metric,  # PICACO's metric: the search itself is value-aware
        prompt_model=scripted_lm,
        task_model=scripted_lm,
        auto=None,
        num_candidates=2,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        num_threads=1,
        verbose=False,
    )
    with dspy.context(lm=scripted_lm):
        tuned = KeepValueInstruction(mipro).compile(
            aligned, trainset=prompts(4, offset=200), valset=prompts(3, offset=300), num_trials=2, minibatch=False
        )
    assert meta in tuned.respond.signature.instructions
    for candidate in tuned.candidate_programs:
        assert meta in candidate["program"].respond.signature.instructions


class RewritesInstructions(dspy.teleprompt.Teleprompter):
    """What an instruction optimiser may do: replace every instruction with its own proposal."""

    def compile(self, student, *, trainset, valset=None):
        program = student.deepcopy()
        for _, predictor in program.named_predictors():
            predictor.signature = predictor.signature.with_instructions("Be concise and concrete.")
        program.candidate_programs = [{"program": program, "score": 1.0}, {"program": student.deepcopy(), "score": 0.5}]
        return program


def test_an_instruction_optimiser_that_drops_the_meta_instruction_gets_it_back(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)
    meta = aligned.picaco_result.final_instruction
    plain = RewritesInstructions().compile(aligned, trainset=prompts(2))
    assert meta not in plain.respond.signature.instructions  # what happens without the wrapper
    kept = KeepValueInstruction(RewritesInstructions()).compile(aligned, trainset=prompts(2), valset=prompts(1))
    instructions = kept.respond.signature.instructions
    assert instructions.startswith("Be concise and concrete.") and instructions.endswith(meta)  # both kept
    assert kept.value_instruction_restored == ["respond"]
    for candidate in kept.candidate_programs:
        assert candidate["program"].respond.signature.instructions.count(meta) == 1


def test_gepa_after_picaco_with_the_meta_instruction_kept(scripted_metric, scripted_lm):
    aligned = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2)
    meta = aligned.picaco_result.final_instruction
    gepa = dspy.GEPA(metric=scripted_metric, reflection_lm=scripted_lm, max_metric_calls=24, num_threads=1)
    with dspy.context(lm=scripted_lm):
        tuned = KeepValueInstruction(gepa).compile(aligned, trainset=prompts(3, offset=200), valset=prompts(2, 300))
    assert meta in tuned.respond.signature.instructions


def test_picaco_inside_better_together_with_a_few_shot_step(scripted_metric, scripted_lm):
    student = Assistant()
    student.set_lm(scripted_lm)  # BetterTogether requires every predictor to have its LM
    together = dspy.BetterTogether(
        metric=scripted_metric,
        v=PICACO(metric=scripted_metric, prompt_model=scripted_lm, **SMALL),
        f=dspy.LabeledFewShot(k=2),
    )
    with dspy.context(lm=scripted_lm):
        program = together.compile(student, trainset=labelled(4), valset=prompts(3, offset=100), strategy="v -> f")
    strategies = [c["strategy"] for c in program.candidate_programs]
    assert set(strategies) == {"", "v", "v -> f"}  # the seed, after PICACO, after both
    after_both = next(c["program"] for c in program.candidate_programs if c["strategy"] == "v -> f")
    assert covers_all(after_both.respond.signature.instructions) and after_both.respond.demos


def test_restore_appends_only_where_missing():
    program = Assistant()
    meta = "Honour care and honesty."
    assert restore_meta_instruction(program, meta, ["respond"]) == ["respond"]
    instructions = program.respond.signature.instructions
    assert instructions.endswith(meta)
    assert restore_meta_instruction(program, meta, ["respond"]) == []  # already there: unchanged
    assert program.respond.signature.instructions == instructions


def test_the_wrapper_needs_to_know_what_to_keep(scripted_lm):
    with pytest.raises(ConfigurationError, match="compile the student with PICACO first"):
        KeepValueInstruction(dspy.LabeledFewShot()).compile(Assistant(), trainset=labelled(2))
    with pytest.raises(ConfigurationError, match=r"Unknown predictor name\(s\) \['draft'\]"):
        KeepValueInstruction(dspy.LabeledFewShot(), meta_instruction="Be kind.", predictor_names=["draft"]).compile(
            Assistant(), trainset=labelled(2)
        )
