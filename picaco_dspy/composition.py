"""Running another DSPy optimiser after PICACO without losing the value meta-instruction.

Instruction optimisers (MIPROv2, COPRO, GEPA, SIMBA) write whole new instructions, so they can silently drop the
meta-instruction PICACO appended. :class:`KeepValueInstruction` wraps such an optimiser: it runs it unchanged and then
puts the meta-instruction back on every target predictor that lost it, in the returned program and in each of its
``candidate_programs``. Few-shot optimisers (LabeledFewShot, BootstrapFewShot) only add demos and need no wrapper.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from picaco_dspy.errors import ConfigurationError
from picaco_dspy.optimize.program_edit import all_predictors, compose

logger = logging.getLogger(__name__)


class KeepValueInstruction(Teleprompter):
    """Run ``optimizer`` on a PICACO-aligned program and keep PICACO's meta-instruction on its target predictors.

    The inner optimiser starts from the aligned program (its proposals see the meta-instruction) and is free to
    rewrite the rest of each instruction; after it returns, any target predictor whose instruction no longer contains
    the meta-instruction gets it appended again. To make the inner search itself value-aware, give it PICACO's
    metric (``TotalCorrelationBound`` is a DSPy metric with per-value ``objective_scores``).

    Args:
        optimizer: Any DSPy teleprompter (MIPROv2, COPRO, GEPA, SIMBA, ...).
        meta_instruction: The instruction to keep; None reads it from the student's ``picaco_result``.
        predictor_names: The predictors that must carry it; None reads them from the student's ``picaco_result``.

    Examples:
        >>> aligned = PICACO(metric=metric, auto="light").compile(program, trainset=train)
        >>> mipro = dspy.MIPROv2(metric=task_metric, auto="light")
        >>> tuned = KeepValueInstruction(mipro).compile(aligned, trainset=train)
        >>> aligned.picaco_result.final_instruction in tuned.respond.signature.instructions
        True
    """

    def __init__(
        self,
        optimizer: Teleprompter,
        *,
        meta_instruction: str | None = None,
        predictor_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not hasattr(optimizer, "compile"):
            raise ConfigurationError(f"optimizer must be a DSPy teleprompter, got {type(optimizer).__name__}.")
        self.optimizer = optimizer
        self.meta_instruction = meta_instruction
        self.predictor_names = list(predictor_names) if predictor_names is not None else None

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
        **kwargs: Any,
    ) -> dspy.Module:
        """Compile with the inner optimiser, then restore the meta-instruction where it was dropped.

        Arguments the inner optimiser's ``compile`` does not take (``teacher``, ``valset``) are not passed, as
        ``dspy.BetterTogether`` does; other keyword arguments go to it unchanged.

        Raises:
            ConfigurationError: no meta-instruction was given and the student has no ``picaco_result``.
        """
        meta, targets = self._what_to_keep(student)
        accepted = inspect.signature(self.optimizer.compile).parameters
        optional = {"teacher": teacher, "valset": valset}
        passed = {k: v for k, v in optional.items() if k in accepted and (v is not None or k == "valset")}
        program = self.optimizer.compile(student, trainset=trainset, **passed, **kwargs)
        restored = restore_meta_instruction(program, meta, targets)
        for candidate in getattr(program, "candidate_programs", None) or []:
            if isinstance(candidate, dict) and isinstance(candidate.get("program"), dspy.Module):
                restore_meta_instruction(candidate["program"], meta, targets)
        if restored:
            logger.info(
                "%s dropped the value meta-instruction from %s; it was appended again",
                type(self.optimizer).__name__,
                restored,
            )
        program.value_instruction_restored = restored
        return program

    def _what_to_keep(self, student: dspy.Module) -> tuple[str, list[str]]:
        result = getattr(student, "picaco_result", None)
        meta = self.meta_instruction or (result.final_instruction if result is not None else None)
        if not meta:
            raise ConfigurationError(
                "KeepValueInstruction needs the meta-instruction: compile the student with PICACO first, or pass "
                "meta_instruction=... (and predictor_names=...)."
            )
        names = self.predictor_names or (list(result.predictor_names) if result is not None else None)
        available = [name for name, _ in all_predictors(student)]
        targets = names or available
        unknown = [n for n in targets if n not in available]
        if unknown:
            raise ConfigurationError(f"Unknown predictor name(s) {unknown}; the program's predictors are {available}.")
        return meta, list(targets)


def restore_meta_instruction(program: dspy.Module, meta_instruction: str, predictor_names: Sequence[str]) -> list[str]:
    """Append ``meta_instruction`` to each named predictor whose instruction lacks it (in place).

    Returns:
        The names of the predictors it was appended to.
    """
    restored = []
    for name, predictor in all_predictors(program):
        if name in predictor_names and meta_instruction.strip() not in predictor.signature.instructions:
            own = predictor.signature.instructions
            predictor.signature = predictor.signature.with_instructions(compose(own, meta_instruction))
            restored.append(name)
    return restored
