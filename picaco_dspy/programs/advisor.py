"""An advisor: an everyday dilemma in, advice out, with the reasoning written first (ChainOfThought)."""

import dspy


class GiveAdvice(dspy.Signature):
    """Give thoughtful, practical advice on the person's dilemma."""

    dilemma: str = dspy.InputField(desc="the situation and the choice the person faces")
    advice: str = dspy.OutputField(desc="what the person could do, and why")


class Advisor(dspy.Module):
    """Thinks a dilemma through, then advises."""

    def __init__(self) -> None:
        super().__init__()
        self.advise = dspy.ChainOfThought(GiveAdvice)

    def forward(self, dilemma: str) -> dspy.Prediction:
        return self.advise(dilemma=dilemma)
