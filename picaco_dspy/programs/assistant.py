"""A one-predictor assistant: a user query in, a response out."""

import dspy


class Assistant(dspy.Module):
    """Answers a user's query in one step."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict("query -> response")

    def forward(self, query: str) -> dspy.Prediction:
        return self.respond(query=query)
