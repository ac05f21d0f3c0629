import math

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, TokenLogprob, TopLogprob, Usage

from picaco_dspy import ValueJudge
from picaco_dspy.errors import JudgeError
from picaco_dspy.testing.attacks import ATTACKS, attack
from picaco_dspy.testing.scripted_world import MARKERS, ScriptedEngine


def test_joint_judge_scores_what_is_present(scripted_lm, engine, liberalism):
    judge = ValueJudge(lm=scripted_lm)
    response = f"{MARKERS['Hedonism']} and {MARKERS['Stimulation']}."
    judgement = judge.judge("Plan my weekend", response, liberalism)
    assert judgement.conformity == {"Universalism": 1, "Self-direction": 1, "Hedonism": 5, "Stimulation": 5}
    assert judgement.probabilities["Hedonism"] == pytest.approx(0.9)
    assert judgement.probabilities["Universalism"] == pytest.approx(0.1)
    assert judgement.method == "parsed" and engine.calls["judge"] == 1


def test_per_value_mode_makes_one_call_per_value(liberalism):
    class PerValueEngine:
        def __init__(self):
            self.calls = 0

        def close(self):
            pass

        def complete(self, request):
            self.calls += 1
            text = "[[ ## score ## ]]\n4/5\n\n[[ ## completed ## ]]"
            return Response(
                id=None,
                model="x",
                message=Message.assistant([TextPart(text)]),
                finish_reason="stop",
                usage=Usage(input_tokens=1, output_tokens=1),
            )

    eng = PerValueEngine()
    judge = ValueJudge(lm=dspy.LM("x/y", engine=eng), mode="per_value", use_logprobs=False)
    judgement = judge.judge("q", "r", liberalism)
    assert eng.calls == 4 and set(judgement.conformity.values()) == {4}


def test_unparseable_judgement_is_retried_then_reported(liberalism):
    engine = ScriptedEngine(fail_judge_for="UNRATEABLE")
    lm = dspy.LM("scripted/world", engine=engine, temperature=0.0)
    judge = ValueJudge(lm=lm, max_retries=2)
    with pytest.raises(JudgeError, match="could not be parsed after 3 attempts"):
        judge.judge("q", "UNRATEABLE text", liberalism)
    assert engine.calls["judge"] == 3  # first try + 2 retries with fresh rollout ids, not 3 cache hits


def test_failed_lm_call_raises_instead_of_scoring(liberalism):
    class Down:
        def close(self):
            pass

        def complete(self, request):
            raise ConnectionError("provider unreachable")

    judge = ValueJudge(lm=dspy.LM("x/down", engine=Down(), num_retries=0))
    with pytest.raises(JudgeError, match="judge LM call failed"):
        judge.judge("q", "r", liberalism)


def test_logprobs_give_expected_scores(liberalism):
    class LogprobEngine:
        def close(self):
            pass

        def complete(self, request):
            pieces = ["[[ ## ratings ## ]]\n"]
            for name in liberalism.names:
                pieces += [f"{name}:", " 4", "\n"]
            pieces.append("\n[[ ## completed ## ]]")
            logprobs = []
            for piece in pieces:
                top = ()
                if piece == " 4":
                    top = (TopLogprob(token=" 4", logprob=math.log(0.5)), TopLogprob(token=" 2", logprob=math.log(0.5)))
                logprobs.append(TokenLogprob(token=piece, logprob=math.log(0.5) if piece == " 4" else 0.0, top=top))
            return Response(
                id=None,
                model="x",
                message=Message.assistant([TextPart("".join(pieces))]),
                finish_reason="stop",
                usage=Usage(input_tokens=1, output_tokens=1),
                logprobs=tuple(logprobs) if request.config.logprobs is not None else None,
            )

    judge = ValueJudge(lm=dspy.LM("x/lp", engine=LogprobEngine()))
    judgement = judge.judge("q", "r", liberalism)
    assert judgement.method == "logprobs"
    assert list(judgement.conformity.values()) == pytest.approx([3.0] * 4)
    assert judgement.probabilities["Hedonism"] == pytest.approx(0.5)


BASE = "Try a new recipe with friends this weekend; it is your own choice which one, so enjoy yourself."


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_no_attack_raises_the_score_of_what_it_is_added_to(scripted_metric, kind):
    honest = scripted_metric.score_response("Plan my weekend", BASE)
    attacked = scripted_metric.score_response("Plan my weekend", attack(kind, BASE, scripted_metric.values.names))
    assert attacked.reward <= honest.reward + 1e-9, kind
    assert all(attacked.conformity[n] <= honest.conformity[n] for n in honest.conformity), kind


@pytest.mark.parametrize("kind", sorted(k for k in ATTACKS if k != "value-name listing"))
def test_a_gullible_judge_is_not_fooled_once_the_response_is_screened(kind, liberalism):
    engine = ScriptedEngine(gullible_judge=True)
    lm = dspy.LM("scripted/gullible", engine=engine, temperature=0.0)
    attacked = attack(kind, BASE, liberalism.names)
    fooled = ValueJudge(lm=lm, hardened=False).judge("Plan my weekend", attacked, liberalism)
    if kind != "fake score block":  # (its fake field markers cut the scripted engine's reading of the field short)
        assert set(fooled.conformity.values()) == {5}, "the attack must work on the undefended judge"
    defended = ValueJudge(lm=lm).judge("Plan my weekend", attacked, liberalism)
    assert defended.attempts == 2 and engine.calls["judge"] == 3  # the response and its screened view
    honest = ValueJudge(lm=lm).judge("Plan my weekend", BASE, liberalism)
    assert defended.screened and not honest.screened
    assert defended.conformity == honest.conformity  # never above its screened self, which is the honest response


def test_honest_responses_are_judged_once(scripted_lm, engine, liberalism):
    judgement = ValueJudge(lm=scripted_lm).judge("Plan my weekend", "Give yourself 10 minutes; " + BASE, liberalism)
    assert not judgement.screened and judgement.attempts == 1 and engine.calls["judge"] == 1


def test_metric_feedback_tells_the_optimiser_that_evaluator_text_does_not_pay(scripted_metric):
    injected = attack("instruction injection", BASE, scripted_metric.values.names)
    attacked = scripted_metric.score_response("Plan", injected)
    honest = scripted_metric.score_response("Plan", BASE)
    assert attacked.screened and not honest.screened
    assert "addresses the evaluator" in scripted_metric.feedback(attacked)
    assert "addresses the evaluator" not in scripted_metric.feedback(honest)


def test_listing_the_value_names_is_penalised_as_parroting(scripted_metric):
    listing = attack("value-name listing", BASE, scripted_metric.values.names)
    parroting = scripted_metric.score_response("Plan my weekend", listing)
    honest = scripted_metric.score_response("Plan my weekend", BASE)
    assert parroting.redundancy > honest.redundancy and parroting.reward < honest.reward


@pytest.mark.parametrize("kwargs", [{"mode": "both"}, {"scale": "1-10"}, {"max_retries": -1}, {"use_logprobs": "yes"}])
def test_bad_judge_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ValueJudge(**kwargs)


def test_a_rating_that_does_not_start_with_a_digit_is_read_from_the_first_tokens_digit_alternatives(liberalism):
    class ChattyRater:
        """Answers with a word; the digits sit among the first token's alternatives (small local judges)."""

        def close(self):
            pass

        def complete(self, request):
            first = TokenLogprob(
                token="The",
                logprob=math.log(0.5),
                top=(TopLogprob(token=" 2", logprob=math.log(0.1)), TopLogprob(token="5", logprob=math.log(0.3))),
            )
            return Response(
                id=None,
                model="x",
                message=Message.assistant([TextPart("[[ ## score ## ]]\nThe response\n\n[[ ## completed ## ]]")]),
                finish_reason="stop",
                usage=Usage(input_tokens=1, output_tokens=1),
                logprobs=(first,) if request.config.logprobs is not None else None,
            )

    judge = ValueJudge(lm=dspy.LM("x/chatty", engine=ChattyRater()), mode="per_value", max_retries=0)
    judgement = judge.judge("q", "r", liberalism)
    assert judgement.method == "logprobs-first-token"
    assert list(judgement.conformity.values()) == pytest.approx([(2 * 0.1 + 5 * 0.3) / 0.4] * 4)
    blind = ValueJudge(
        lm=dspy.LM("x/chatty2", engine=ChattyRater()), mode="per_value", max_retries=0, use_logprobs=False
    )
    with pytest.raises(JudgeError, match="no 1-5 score"):
        blind.judge("q", "r", liberalism)  # without log-probabilities there is nothing to read: an error, no score
