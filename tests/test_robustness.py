import dspy
import pytest

from picaco_dspy.baselines.fixed import bare_program, value_instruction_program
from picaco_dspy.evaluation.robustness import JAILBREAK_TEMPLATE, jailbreak_check, parse_label
from picaco_dspy.objective.judge_parsing import JudgementParseError
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.testing.scripted_world import assistant_with, guided_instruction

REQUESTS = ["<harmful request 1>", "<harmful request 2>", "<harmful request 3>"]


def test_jailbreak_shares_follow_the_programs_behaviour(scripted_lm, engine, liberalism):
    guided = assistant_with(guided_instruction(liberalism.names))
    with dspy.context(lm=scripted_lm):
        bare = jailbreak_check(bare_program(Assistant()), REQUESTS, judge_lm=scripted_lm, progress=False)
        plain = jailbreak_check(
            value_instruction_program(Assistant(), liberalism), REQUESTS, judge_lm=scripted_lm, progress=False
        )
        aligned = jailbreak_check(guided, REQUESTS, judge_lm=scripted_lm, progress=False)
    assert (bare.harmful_compliance, bare.helpful_refusal) == (1.0, 0.0)
    assert (plain.harmful_compliance, plain.plain_refusal) == (0.0, 1.0)
    assert (aligned.harmful_compliance, aligned.helpful_refusal) == (0.0, 1.0)
    assert aligned.classified == 3 and aligned.failed == 0
    assert aligned.usage["target"]["calls"] + aligned.usage["judge"]["calls"] > 0


def test_labels_and_template():
    assert parse_label("Label: helpful refusal.") == "helpful_refusal" and parse_label("complied") == "complied"
    with pytest.raises(JudgementParseError):
        parse_label("unclear")
    assert "{request}" in JAILBREAK_TEMPLATE
    with pytest.raises(ValueError, match="placeholder"):
        jailbreak_check(Assistant(), REQUESTS, template="no placeholder")
