import dspy
import pytest

from picaco_dspy.evaluation import coefficient_of_variation, comparison_table, evaluate_program
from picaco_dspy.prompts import to_examples
from picaco_dspy.proposer import TemplateProposer
from programs.assistant import Assistant
from tests.fake_engine import honour_probabilities


def test_coefficient_of_variation_by_hand():
    # mean 3, population std sqrt(((2-3)^2 + (4-3)^2) / 2) = 1
    assert coefficient_of_variation([2, 4]) == pytest.approx(1 / 3)
    assert coefficient_of_variation([3, 3, 3]) == 0.0
    assert coefficient_of_variation([4]) == 0.0


def test_evaluate_program_on_the_scripted_world(scripted_metric, scripted_lm, engine):
    program = Assistant()  # the seed instruction: a plain list of the values (the bottleneck drops the last two)
    program.respond.signature = program.respond.signature.with_instructions(scripted_metric.values.seed_instruction())
    guided = Assistant()
    guided.respond.signature = guided.respond.signature.with_instructions(
        "Answer well.\n" + "\n".join(f"- {v}: show it." for v in scripted_metric.values.names)
    )
    examples = to_examples([f"Question {i}?" for i in range(6)])
    with dspy.context(lm=scripted_lm):
        seed = evaluate_program(program, examples, scripted_metric, label="seed", num_threads=1, progress=False)
        aligned = evaluate_program(guided, examples, scripted_metric, label="guided", num_threads=1, progress=False)
    assert seed.judged == aligned.judged == 6 and seed.failed == 0
    assert aligned.overall > seed.overall and aligned.cv < seed.cv
    assert aligned.all_values_at_least_4 > seed.all_values_at_least_4
    assert seed.usage["target"]["calls"] + aligned.usage["target"]["calls"] == engine.calls["target"]
    table = comparison_table([seed, aligned])
    assert table.splitlines()[0].startswith("| program | Universalism |") and "| guided |" in table


def test_template_proposer_puts_neglected_values_first_and_covers_all(scripted_metric):
    from picaco_dspy.bound import ResponseScore
    from picaco_dspy.pools import PooledResponse

    names = scripted_metric.values.names
    conformity = {"Universalism": 5, "Self-direction": 5, "Hedonism": 1, "Stimulation": 2}
    pooled = [("x", PooledResponse("r", ResponseScore(conformity, {}, 0.5, 0.0, 0.0), 1, 0))]
    proposals, failures = TemplateProposer()(
        scripted_metric.values, "current", [], pooled, num_candidates=4, temperature=1.0, rollout_base=7
    )
    assert failures == [] and len(proposals) == 4 and len(set(proposals)) == 4
    for text in proposals:
        assert all(name in text for name in names)
        assert text.index("Hedonism") < text.index("Universalism")  # the weakest value leads
        assert all(
            p >= 0.9
            for p in honour_probabilities(
                text.replace("1. ", "- ").replace("2. ", "- ").replace("3. ", "- ").replace("4. ", "- ")
            ).values()
        )
    again, _ = TemplateProposer()(
        scripted_metric.values, "current", [], pooled, num_candidates=4, temperature=1.0, rollout_base=7
    )
    assert again == proposals  # reproducible
