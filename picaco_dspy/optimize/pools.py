"""Per-prompt response pools: the aligned pool (top-M1 by reward) and the noisy pool (top-M2 by parroting).

The two selection rules are deliberately separate and named (an ICLR reviewer found "maximise and minimise log q_phi"
confusing): the aligned pool keeps the responses with the highest reward ``r``; the noisy pool keeps the bare
program's responses with the highest redundancy ``q_phi``, i.e. the most parroting ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from picaco_dspy.objective.bound import PoolItem, ResponseScore

NOISY = "noisy"
ALIGNED = "aligned"


@dataclass(frozen=True)
class PooledResponse:
    """A scored response in a pool.

    Attributes:
        response: The response text.
        score: Its judged :class:`ResponseScore`.
        iteration: Iteration of origin (0 = the bare program's responses for the noisy pool).
        rollout_id: The rollout id it was sampled with.
        instruction: The meta-instruction it was sampled under ("" for the bare program).
        source: ``"student"`` (the program being compiled) or ``"teacher"`` (the teacher program of ``compile``).
    """

    response: str
    score: ResponseScore
    iteration: int
    rollout_id: int
    instruction: str = ""
    source: str = "student"

    @property
    def reward(self) -> float:
        return self.score.reward

    def to_dict(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "iteration": self.iteration,
            "rollout_id": self.rollout_id,
            "instruction": self.instruction,
            "source": self.source,
            **self.score.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PooledResponse:
        score = ResponseScore.from_dict(data)
        return cls(
            data["response"],
            score,
            int(data["iteration"]),
            int(data["rollout_id"]),
            data.get("instruction", ""),
            data.get("source", "student"),
        )


@dataclass
class PromptPool:
    """The pools of one prompt ``x_i``.

    Attributes:
        prompt: The prompt text ``x_i`` (what the reference model conditions on).
        inputs: The program inputs of the example.
        aligned: Best responses so far, highest reward first (at most ``aligned_capacity``).
        noisy: The most parroting bare responses, highest ``q_phi`` first (at most ``noisy_capacity``).
    """

    prompt: str
    inputs: dict[str, Any]
    aligned: list[PooledResponse] = field(default_factory=list)
    noisy: list[PooledResponse] = field(default_factory=list)

    def add_aligned(self, candidates: Iterable[PooledResponse], capacity: int) -> int:
        """Merge new responses into the aligned pool and keep the top ``capacity`` by reward.

        Identical texts are kept once (the earliest copy). Ties are broken by iteration, then rollout id, so the
        result does not depend on the order responses arrived in.

        Returns:
            How many of the candidates entered the pool.
        """
        candidates = list(candidates)
        merged = _dedupe([*self.aligned, *candidates])
        merged.sort(key=lambda p: (-p.reward, p.iteration, p.rollout_id, p.source, p.response))
        self.aligned = merged[:capacity]
        kept = {id(p) for p in self.aligned}
        return sum(1 for c in candidates if id(c) in kept)

    def set_noisy(self, candidates: Iterable[PooledResponse], capacity: int) -> None:
        """Keep the ``capacity`` bare responses with the highest ``q_phi`` (the most parroting ones)."""
        ranked = sorted(_dedupe(list(candidates)), key=lambda p: (-p.score.redundancy, p.rollout_id, p.response))
        self.noisy = ranked[:capacity]

    def items(
        self,
        include_noisy: bool = True,
        system_for: Callable[[str], str] | None = None,
        aligned_limit: int | None = None,
    ) -> list[PoolItem]:
        """Pool items for ``J(e)``: aligned then (optionally) noisy.

        Args:
            include_noisy: Add the noisy pool.
            system_for: Maps a response's meta-instruction ("" for bare responses) to the system text it was sampled
                under, which becomes the item's ``origin`` (for importance weighting).
            aligned_limit: Use only the best ``aligned_limit`` aligned responses (a step's ``M1``).
        """
        pooled = self.aligned[:aligned_limit] + (self.noisy if include_noisy else [])
        return [PoolItem(p.response, p.reward, system_for(p.instruction) if system_for else None) for p in pooled]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "inputs": self.inputs,
            "aligned": [p.to_dict() for p in self.aligned],
            "noisy": [p.to_dict() for p in self.noisy],
        }


def _dedupe(responses: Sequence[PooledResponse]) -> list[PooledResponse]:
    ordered = sorted(responses, key=lambda p: (p.iteration, p.rollout_id, p.source))
    seen: dict[str, PooledResponse] = {}
    for p in ordered:
        seen.setdefault(p.response.strip(), p)
    return list(seen.values())
