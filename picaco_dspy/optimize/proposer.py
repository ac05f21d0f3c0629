"""Instruction Refinement's proposer: an LM writes candidate meta-instructions from the pools' evidence."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from typing import Any

import dspy

from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.pools import PooledResponse
from picaco_dspy.optimize.program_edit import supports_request_seed
from picaco_dspy.runtime.retries import is_empty_answer, is_fatal, is_transient

logger = logging.getLogger(__name__)


class ProposeValueInstruction(dspy.Signature):
    """You write the meta-instruction (system prompt) of an AI assistant so that its responses honour every one of
    several human values at once, in substance rather than by naming them. Study the values, the current instruction,
    the earlier instructions with their scores, and the strongest and weakest responses with their per-value
    conformity (1-5). Then write one improved instruction that makes the neglected values present while keeping the
    others, without making responses recite the value names or definitions. Reply with the instruction text only."""

    values: str = dspy.InputField(desc="the values, one per line as `name: definition`")
    current_instruction: str = dspy.InputField(desc="the instruction in use now")
    instruction_history: str = dspy.InputField(desc="earlier instructions with their score J (higher is better)")
    strong_examples: str = dspy.InputField(desc="well-aligned responses with per-value conformity")
    weak_examples: str = dspy.InputField(desc="poorly aligned responses with per-value conformity")
    proposed_instruction: str = dspy.OutputField(desc="the new instruction, plain text")


class InstructionProposer(dspy.Module):
    """Proposes candidate meta-instructions (one LM call per candidate, each with its own rollout id).

    Args:
        lm: The proposer LM (the paper uses the target model itself); None uses the configured LM.
        max_examples: Strong and weak examples shown, each.
        max_example_chars: Each example response is cut to this length.
        max_instruction_chars: Longer proposals are cut.
    """

    proposal_kind = "lm_proposal"  # how its candidates were made, in their lineage

    def __init__(
        self,
        lm: dspy.BaseLM | None = None,
        *,
        max_examples: int = 3,
        max_example_chars: int = 600,
        max_instruction_chars: int = 4000,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.max_examples = max_examples
        self.max_example_chars = max_example_chars
        self.max_instruction_chars = max_instruction_chars
        self.propose_one = dspy.Predict(ProposeValueInstruction)

    def forward(
        self,
        values: ValueSet,
        current: str,
        history: Sequence[tuple[str, float]],
        pooled: Sequence[tuple[str, PooledResponse]],
        *,
        num_candidates: int,
        temperature: float,
        rollout_base: int,
    ) -> tuple[list[str], list[str]]:
        """Propose ``num_candidates`` instructions.

        Returns:
            ``(proposals, failures)``: the distinct non-empty proposals, and one message per proposal that failed or
            came back empty (logged at WARNING and reported in the run result, never silently dropped).

        Args:
            values: The composition.
            current: The current meta-instruction.
            history: ``(instruction, J)`` pairs so far.
            pooled: ``(prompt, response)`` pairs from the aligned pools, used as strong/weak examples.
            num_candidates: Proposals to request.
            temperature: Sampling temperature of the proposer.
            rollout_base: First rollout id; candidate ``i`` uses ``rollout_base + i``.
        """
        ranked = sorted(pooled, key=lambda pr: (-pr[1].reward, pr[1].iteration, pr[1].rollout_id))
        strong = ranked[: self.max_examples]
        weak = list(reversed(ranked[len(strong) :]))[: self.max_examples]
        inputs = {
            "values": values.observation_text(),
            "current_instruction": current,
            "instruction_history": "\n\n".join(f"[J = {j:.3f}]\n{text}" for text, j in history[-8:]) or "(none yet)",
            "strong_examples": self._examples(strong) or "(none yet)",
            "weak_examples": self._examples(weak) or "(none yet)",
        }
        proposals: list[str] = []
        failures: list[str] = []
        for i in range(num_candidates):
            config: dict[str, Any] = {"rollout_id": rollout_base + i, "temperature": temperature}
            if supports_request_seed(self.lm or dspy.settings.lm):
                config["seed"] = rollout_base + i
            kwargs: dict[str, Any] = {"config": config, **inputs}
            if self.lm is not None:
                kwargs["lm"] = self.lm
            try:
                text = clean_proposal(self.propose_one(**kwargs).proposed_instruction, self.max_instruction_chars)
            except Exception as exc:  # one failed proposal must not end the run; it is reported
                if is_transient(exc) or is_fatal(exc) or is_empty_answer(exc):  # the caller retries or stops
                    raise
                failures.append(f"proposal {i}: {type(exc).__name__}: {exc}")
                logger.warning("Proposal %d failed: %s: %s", i, type(exc).__name__, exc)
                continue
            if not text:
                failures.append(f"proposal {i}: empty")
                logger.warning("Proposal %d was empty after cleaning; skipped", i)
                continue
            if text not in proposals:
                proposals.append(text)
        return proposals, failures

    def _examples(self, pooled: Sequence[tuple[str, PooledResponse]]) -> str:
        blocks = []
        for prompt, item in pooled:
            scores = ", ".join(f"{n} {c:.1f}" for n, c in item.score.conformity.items())
            blocks.append(
                f"Request: {prompt[:300]}\nResponse: {item.response[: self.max_example_chars]}\n"
                f"Conformity: {scores}; parroting {item.score.redundancy:.2f}"
            )
        return "\n\n".join(blocks)


_LEAD = re.compile(r"^\s*(?:(?:new|improved|proposed)\s+)?(?:meta-)?instruction\s*:\s*", re.IGNORECASE)


def clean_proposal(text: Any, max_chars: int = 4000) -> str:
    """Strip code fences, surrounding quotes and an ``Instruction:`` lead from a proposal; cut it to ``max_chars``."""
    text = str(text or "").strip()
    text = re.sub(r"^```[a-zA-Z]*\n?|\n?```$", "", text).strip()
    text = _LEAD.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:max_chars].strip()


class TemplateProposer:
    """Writes candidate instructions without an LM, from the value definitions and the pools' evidence.

    For offline runs with models too small to write instructions (the embedded SmolLM2). Candidates follow the trend
    the paper reports (a list of names, then per-value guidance, then a persona with guidance), put the values the
    pooled responses neglect first, and vary by candidate. ``temperature`` is ignored; ``rollout_base`` seeds the
    variation, so runs are reproducible.
    """

    proposal_kind = "template"  # how its candidates were made, in their lineage

    _OPENINGS = (
        "Make every response reflect all of the following values in what it actually says and suggests, "
        "not by naming them:",
        "Answer helpfully and let each of these values shape the substance of your answer:",
        "Before answering, consider how your advice can honour every one of these values, then answer so that each "
        "one is visible in the content:",
    )
    _PERSONAS = (
        "Answer as a warm, open-minded guide who takes the person's situation seriously.",
        "Picture yourself as a thoughtful friend who wants the person to thrive.",
        "Speak as an experienced mentor who offers concrete, balanced advice.",
    )

    def __call__(
        self,
        values: ValueSet,
        current: str,
        history: Sequence[tuple[str, float]],
        pooled: Sequence[tuple[str, PooledResponse]],
        *,
        num_candidates: int,
        temperature: float,
        rollout_base: int,
    ) -> tuple[list[str], list[str]]:
        weakest_first = _values_by_conformity(values, pooled)
        proposals: list[str] = []
        for i in range(num_candidates):
            rng = random.Random(rollout_base + i)
            style = i % 3
            order = list(weakest_first)
            if i >= 3:  # later candidates: shuffle all but the weakest value, which stays first
                tail = order[1:]
                rng.shuffle(tail)
                order = order[:1] + tail
            guidance = "\n".join(f"{k}. {v.name}: {v.definition}" for k, v in enumerate(order, 1))
            text = f"{rng.choice(self._OPENINGS)}\n{guidance}"
            if style >= 1 and len(order) > 1:
                weak = " and ".join(v.name for v in order[:2])
                text += f"\nGive particular attention to {weak}, which answers tend to neglect."
            if style == 2:
                text = f"{rng.choice(self._PERSONAS)} {text}"
            if text != current and text not in proposals:
                proposals.append(text)
        return proposals, []


def _values_by_conformity(values: ValueSet, pooled: Sequence[tuple[str, PooledResponse]]) -> list:
    """Values ordered from the least to the most honoured in the pooled responses (set order when no evidence)."""
    if not pooled:
        return list(values)
    means = {v.name: sum(item.score.conformity.get(v.name, 0.0) for _, item in pooled) / len(pooled) for v in values}
    return sorted(values, key=lambda v: (means[v.name], values.index(v.name)))
