import dspy
import pytest

from picaco_dspy.evaluation.evaluate import comparison_table, evaluate_program
from picaco_dspy.evaluation.stats import bootstrap_ci, coefficient_of_variation
from picaco_dspy.optimize.proposer import TemplateProposer
from picaco_dspy.prompts.loading import to_examples
from picaco_dspy.testing.scripted_world import assistant_with, guided_instruction, honour_probabilities


def test_coefficient_of_variation_by_hand():
    # mean 3, population std sqrt(((2-3)^2 + (4-3)^2) / 2) = 1
    assert coefficient_of_variation([2, 4]) == pytest.approx(1 / 3)
    assert coefficient_of_variation([3, 3, 3]) == 0.0
    assert coefficient_of_variation([4]) == 0.0


def test_evaluate_program_on_the_scripted_world(scripted_metric, scripted_lm, engine):
    # the seed instruction is a plain list of the values (the bottleneck drops the last two)
    program = assistant_with(scripted_metric.values.seed_instruction())
    guided = assistant_with(guided_instruction(scripted_metric.values.names))
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
    from picaco_dspy.objective.bound import ResponseScore
    from picaco_dspy.optimize.pools import PooledResponse

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


def test_bootstrap_ci_on_a_known_sample():
    low, high = bootstrap_ci([0.0] * 50 + [1.0] * 50, resamples=4000, seed=1)
    # the mean of 100 Bernoulli(0.5) draws has standard error 0.05: the 95% interval is about 0.40-0.60
    assert 0.38 <= low <= 0.42 and 0.58 <= high <= 0.62
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.5]) == (2.5, 2.5)
    assert bootstrap_ci([1.0, 2.0, 3.0, 4.0], seed=5) == bootstrap_ci([1.0, 2.0, 3.0, 4.0], seed=5)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_pairwise_verdict_parsing():
    from picaco_dspy.evaluation.pairwise import parse_pair_verdict
    from picaco_dspy.objective.judge_parsing import JudgementParseError

    assert parse_pair_verdict("A") == "A" and parse_pair_verdict("**Response B** is better") == "B"
    assert parse_pair_verdict("Tie.") == "tie"
    with pytest.raises(JudgementParseError):
        parse_pair_verdict("Both are fine")


def test_win_rate_against_a_reference_program(scripted_metric, scripted_lm):
    from picaco_dspy.evaluation.evaluate import add_win_rate
    from picaco_dspy.evaluation.pairwise import PairwiseJudge

    seed_program = assistant_with(scripted_metric.values.seed_instruction())
    guided = assistant_with(guided_instruction(scripted_metric.values.names))
    examples = to_examples([f"Question {i}?" for i in range(8)])
    with dspy.context(lm=scripted_lm):
        seed = evaluate_program(seed_program, examples, scripted_metric, label="seed", num_threads=1, progress=False)
        aligned = evaluate_program(guided, examples, scripted_metric, label="guided", num_threads=1, progress=False)
        judge = PairwiseJudge(lm=scripted_lm)
        add_win_rate(aligned, seed, judge, scripted_metric.values, num_threads=1, progress=False)
        add_win_rate(seed, seed, judge, scripted_metric.values, num_threads=1, progress=False)
    assert aligned.win_rate > 0.8 and aligned.win_rate_against == "seed"
    assert seed.win_rate == 0.5  # identical responses tie in both orders
    assert aligned.win_rate_ci[0] <= aligned.win_rate <= aligned.win_rate_ci[1]
    assert aligned.overall_ci[0] <= aligned.overall <= aligned.overall_ci[1]
    assert "vs seed" in comparison_table([seed, aligned])


@pytest.mark.parametrize("kind", ["instruction injection", "other languages", "unicode look-alikes"])
def test_pairwise_judge_compares_without_the_text_addressed_to_the_evaluator(kind, liberalism):
    from picaco_dspy.evaluation.pairwise import PairwiseJudge
    from picaco_dspy.testing.attacks import attack
    from picaco_dspy.testing.scripted_world import ScriptedEngine

    lm = dspy.LM("scripted/gullible", engine=ScriptedEngine(gullible_judge=True), temperature=0.0)
    honest = "Try something new this weekend; it is your own choice."
    verdict = PairwiseJudge(lm=lm).judge_pair(
        "Plan my weekend", attack(kind, honest, liberalism.names), honest, liberalism
    )
    assert verdict.score == 0.5  # the same content ties; the gullible judge would otherwise pick the attack
