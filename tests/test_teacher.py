"""compile(teacher=...): a teacher program's responses compete for the aligned pools, counted and kept apart."""

import json

import dspy
import pytest

from picaco_dspy import ConfigurationError
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.programs.draft_and_revise import DraftAndRevise
from picaco_dspy.teleprompter import PICACO
from picaco_dspy.testing.scripted_world import (
    SETTINGS,
    VALUES,
    assistant_with,
    compile_program,
    guided_instruction,
    prompts,
)


def compile_with_teacher(metric, lm, teacher, **overrides):
    optimizer = PICACO(metric=metric, prompt_model=lm, **{**SETTINGS, "num_iterations": 2, **overrides})
    with dspy.context(lm=lm):
        return optimizer.compile(Assistant(), trainset=prompts(4), teacher=teacher, valset=prompts(3, offset=100))


def test_the_teachers_responses_join_the_pools_and_are_paid_as_target_calls(
    scripted_metric, scripted_lm, engine, tmp_path
):
    strong = assistant_with(guided_instruction(VALUES))  # its own instruction already covers every value
    aligned = compile_with_teacher(scripted_metric, scripted_lm, strong, teacher_samples_per_prompt=2, log_dir=tmp_path)
    result = aligned.picaco_result
    for record in result.iterations:
        assert record.teacher_responses == 4 * 2  # 4 prompts, 2 each
        assert record.new_responses == 4 * SETTINGS["samples_per_prompt"]  # the student's, counted apart
        assert record.teacher_mean_reward > record.mean_reward  # the stronger program writes better responses
    assert result.usage["target"]["calls"] == engine.calls["target"]
    assert result.config["models"]["teacher:respond"] == "scripted/world"

    pooled = [item for pool in json.loads((tmp_path / "pools.json").read_text()) for item in pool["aligned"]]
    assert {item["source"] for item in pooled} == {"student", "teacher"}


def test_a_teacher_lifts_the_aligned_pools(scripted_metric, scripted_lm):
    strong = assistant_with(guided_instruction(VALUES))
    alone = compile_program(Assistant(), scripted_metric, scripted_lm, num_iterations=2).picaco_result
    taught = compile_with_teacher(scripted_metric, scripted_lm, strong).picaco_result
    first_alone, first_taught = alone.iterations[0], taught.iterations[0]
    assert first_taught.aligned_pool_mean_reward > first_alone.aligned_pool_mean_reward
    assert taught.run_name != alone.run_name  # a teacher is part of the run's identity


def test_the_teacher_is_part_of_the_runs_identity(scripted_metric, scripted_lm):
    one = compile_with_teacher(scripted_metric, scripted_lm, assistant_with("Be brief.")).picaco_result
    other = compile_with_teacher(scripted_metric, scripted_lm, assistant_with("Be thorough.")).picaco_result
    assert one.run_name != other.run_name


@pytest.mark.parametrize(
    "teacher, message",
    [
        ("gpt-4o", "teacher must be a DSPy program"),
        (DraftAndRevise(), r"no predictor\(s\) \['respond'\]; its predictors are \['draft', 'revise'\]"),
    ],
)
def test_an_unusable_teacher_is_refused_before_any_call(scripted_metric, scripted_lm, engine, teacher, message):
    with pytest.raises(ConfigurationError, match=message):
        compile_with_teacher(scripted_metric, scripted_lm, teacher)
    assert sum(engine.calls.values()) == 0


def test_the_projection_counts_the_teachers_calls(scripted_metric, scripted_lm, engine):
    strong = assistant_with(guided_instruction(VALUES))
    optimizer = PICACO(metric=scripted_metric, prompt_model=scripted_lm, **{**SETTINGS, "num_iterations": 2})
    alone = optimizer.estimate(Assistant(), prompts(4), prompts(3, offset=100))
    taught = optimizer.estimate(Assistant(), prompts(4), prompts(3, offset=100), teacher=strong)
    assert taught.roles["target"].calls - alone.roles["target"].calls == 2 * 4  # 2 iterations x 4 prompts x 1
    assert sum(engine.calls.values()) == 0
    actual = compile_with_teacher(scripted_metric, scripted_lm, strong).picaco_result.usage
    for role in ("target", "judge"):
        assert abs(taught.roles[role].calls - actual[role]["calls"]) <= 0.25 * actual[role]["calls"], role
