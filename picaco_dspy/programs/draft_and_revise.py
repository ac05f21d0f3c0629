"""A two-predictor assistant: write a draft, then revise it into the final response."""

import dspy


class DraftAndRevise(dspy.Module):
    """Drafts an answer, then revises the draft into the response."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.Predict("query -> draft")
        self.revise = dspy.Predict("query, draft -> response")

    def forward(self, query: str) -> dspy.Prediction:
        draft = self.draft(query=query).draft
        return self.revise(query=query, draft=draft)
