"""Scripted stand-ins for the local likelihood model, for the judge designs that read it."""

from __future__ import annotations

from picaco_dspy.objective.reference import ResponseLikelihood


class WordOverlap:
    """A statement (the scored response) is likelier the more of its words the context (the user message) contains.

    Attributes:
        requests: How many statements were scored.
    """

    def __init__(self) -> None:
        self.requests = 0

    def score(self, requests, usage=None):
        self.requests += len(requests)
        if usage is not None:
            usage.record("reference", calls=len(requests), input_tokens=10 * len(requests))
        out = []
        for r in requests:
            words = r.response.lower().replace(":", " ").split()
            hits = sum(w in r.user.lower() for w in words)
            out.append(ResponseLikelihood(total=-float(len(words) - hits), tokens=len(words)))
        return out
