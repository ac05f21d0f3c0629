"""Every method runs on the scripted world under one budget, with its calls counted per role."""

import dspy
import pytest

from picaco_dspy.baselines.harness import METHODS, run_method
from picaco_dspy.runtime.metering import BudgetExhausted, calls_spent, metered
from picaco_dspy.runtime.usage import UsageMeter
from tests.support.method_context import method_context


def context(lm, liberalism, budget, **kwargs):
    return method_context(lm, budget, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_a_program_within_the_budget(method, scripted_lm, liberalism):
    budget = 120
    run = run_method(method, context(scripted_lm, liberalism, budget))
    assert run.error is None, run.error
    assert run.program is not None and run.instructions
    spent = sum(run.usage[r]["calls"] for r in ("target", "judge", "proposer"))
    if method in ("Q", "Q+IF", "URIAL"):
        assert spent == 0
    else:
        assert 0 < spent <= budget + 4  # a parallel batch may finish calls started before the budget ran out
        assert run.usage["proposer"]["calls"] > 0 and run.usage["judge"]["calls"] > 0
    assert (run.usage["reference"]["input_tokens"] > 0) == (method == "PICACO")


def test_metered_lm_counts_roles_and_refuses_calls_past_the_budget(scripted_lm):
    meter = UsageMeter()
    lm = metered(scripted_lm, "target", meter, max_calls=2)
    program = dspy.Predict("query -> response")
    with dspy.context(lm=lm):
        program(query="one")
        program(query="two")
        with pytest.raises(BudgetExhausted):
            program(query="three")
    assert calls_spent(meter) == 2 and meter.role("target").calls == 2
    assert type(lm.copy(rollout_id=3)).__name__ == "MeteredLM"  # copies stay metered


def test_unknown_method_is_refused(scripted_lm, liberalism):
    from picaco_dspy import ConfigurationError

    with pytest.raises(ConfigurationError, match="Unknown method"):
        run_method("RLHF", context(scripted_lm, liberalism, 10))
