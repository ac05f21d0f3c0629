"""Pinned runs of the scripted world: the J trajectory, the calls per role and the final instruction of three
compiles, as they were before the subpackage redesign (commit 8fd007c). A refactor that changes what PICACO does,
not only where its code lives, fails here; a deliberate change of the algorithm updates the numbers with it."""

import dspy
import pytest

from picaco_dspy import PICACO
from picaco_dspy.programs.assistant import Assistant
from picaco_dspy.programs.draft_and_revise import DraftAndRevise
from picaco_dspy.testing.scripted_world import SETTINGS, ScriptedEngine, covers_all, prompts, scripted_metric

PINNED = {
    "fixed": ([-5.519014, -3.988002, -3.616396, -3.403501], {"target": 57, "judge": 42, "proposer": 16}),
    "auto": ([-5.519014, -3.988002, -3.731252], {"target": 49, "judge": 38, "proposer": 12}),
    "two_predictors": ([-4.460533, -3.62112, -3.171619, -3.007888], {"target": 114, "judge": 39, "proposer": 16}),
}
CASES = {
    "fixed": (Assistant, {}),
    "auto": (Assistant, {"auto": "light", "num_iterations": 3}),
    "two_predictors": (DraftAndRevise, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scripted_world_run_is_unchanged(case):
    program, overrides = CASES[case]
    lm = dspy.LM("scripted/world", engine=ScriptedEngine(), temperature=1.0, max_tokens=512)  # empty cache: conftest
    optimizer = PICACO(metric=scripted_metric(lm), prompt_model=lm, **{**SETTINGS, "storage": None, **overrides})
    with dspy.context(lm=lm):
        result = optimizer.compile(program(), trainset=prompts(4), valset=prompts(3, offset=100)).picaco_result
    trajectory, calls = PINNED[case]
    assert [round(record.J, 6) for record in result.iterations] == trajectory
    assert {role: result.usage[role]["calls"] for role in calls} == calls
    assert covers_all(result.final_instruction)
