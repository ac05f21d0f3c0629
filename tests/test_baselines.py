import dspy

from picaco_dspy.baselines.fixed import URIAL_EXAMPLES, bare_program, urial_program, value_instruction_program
from picaco_dspy.evaluation.evaluate import evaluate_program
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.programs.draft_and_revise import DraftAndRevise
from picaco_dspy.prompts.loading import to_examples


def test_fixed_baselines_edit_copies_only(liberalism):
    student = Assistant()
    before = student.respond.signature.instructions
    bare = bare_program(student)
    plain = value_instruction_program(student, liberalism)
    urial = urial_program(student, liberalism)
    assert bare.respond.signature.instructions == before and bare is not student
    assert plain.respond.signature.instructions.endswith(liberalism.seed_instruction())
    assert "helpful, respectful and honest" in urial.respond.signature.instructions
    assert [d["query"] for d in urial.respond.demos] == [q for q, _ in URIAL_EXAMPLES]
    assert student.respond.signature.instructions == before and student.respond.demos == []


def test_urial_examples_only_where_the_fields_fit(liberalism):
    program = urial_program(DraftAndRevise(), liberalism)
    assert len(program.draft.demos) == 2 and program.revise.demos == []  # revise has two inputs
    assert "helpful, respectful and honest" in program.revise.signature.instructions


def test_value_instruction_beats_bare_in_the_scripted_world(scripted_metric, scripted_lm, liberalism):
    examples = to_examples([f"Question {i}?" for i in range(6)])
    with dspy.context(lm=scripted_lm):
        bare = evaluate_program(bare_program(Assistant()), examples, scripted_metric, label="Q", progress=False)
        plain = evaluate_program(
            value_instruction_program(Assistant(), liberalism), examples, scripted_metric, label="Q+IF", progress=False
        )
    assert plain.overall > bare.overall
