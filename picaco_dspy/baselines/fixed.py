"""Fixed-prompt baselines from the paper's tables: Q (as given), Q+IF (plain value instruction) and URIAL-style.

They cost no optimisation calls. OPRO lives in :mod:`picaco_dspy.baselines.opro`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dspy

from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.program_edit import own_instructions, target_predictors, with_meta_instruction

logger = logging.getLogger(__name__)

# URIAL (Lin et al., 2024) aligns with a fixed system prompt and a few stylistic examples. This prompt and these
# examples are written by picaco-dspy in that style; they are not URIAL's own text.
URIAL_PREAMBLE = (
    "You are a helpful, respectful and honest assistant. Answer the user's question as well as you can: be "
    "accurate, engaging and concrete, acknowledge uncertainty, and avoid anything harmful, unethical or prejudiced. "
    "If a request is unclear or unsafe, say so and offer a better way forward. Your answers should also reflect "
    "these values: {values}."
)
URIAL_EXAMPLES = (
    (
        "What is a good way to start exercising again after a long break?",
        "Welcome back! Start gently so it stays enjoyable:\n\n1. **Pick something you like** - a brisk walk, a bike "
        "ride or a dance class counts.\n2. **Keep it short** - 20 minutes, three times a week, for the first two "
        "weeks.\n3. **Add a little each week** - a few more minutes or one more session.\n4. **Listen to your body** "
        "- mild soreness is normal; sharp pain is a sign to stop and, if it persists, to see a doctor.\n\nWhich kind "
        "of activity appeals to you most? I can suggest a simple plan around it.",
    ),
    (
        "Should I tell my friend that I didn't like the gift she gave me?",
        "It depends on what you hope to achieve. If the gift is something she will never know you don't use, a warm "
        "thank-you for the thought is kind and honest - you are grateful for the gesture. If she might buy more of "
        'the same, or asks you directly, you could gently share what you enjoy instead, for example: "I loved that '
        "you thought of me - I'm more into X these days.\" Either way, the choice is yours; what matters most is that "
        "she feels appreciated.",
    ),
)


def bare_program(student: dspy.Module) -> dspy.Module:
    """Q: the program as given (a copy)."""
    return student.deepcopy()


def value_instruction_program(
    student: dspy.Module, values: ValueSet, predictor_names: Sequence[str] | None = None
) -> dspy.Module:
    """Q+IF: the program with the plain value instruction (PICACO's seed ``e^0``)."""
    targets = target_predictors(student, predictor_names)
    return with_meta_instruction(student, own_instructions(student, targets), values.seed_instruction())


def urial_program(
    student: dspy.Module, values: ValueSet, predictor_names: Sequence[str] | None = None, *, with_examples: bool = True
) -> dspy.Module:
    """URIAL-style: a fixed alignment system prompt plus a few stylistic examples as demos.

    Examples are attached to target predictors with exactly one input and one text output (their fields are filled
    with the example's request and answer); other predictors get the prompt only.
    """
    targets = target_predictors(student, predictor_names)
    program = with_meta_instruction(
        student, own_instructions(student, targets), URIAL_PREAMBLE.format(values=", ".join(values.names))
    )
    if with_examples:
        for name, predictor in program.named_predictors():
            inputs, outputs = list(predictor.signature.input_fields), list(predictor.signature.output_fields)
            if name in targets and len(inputs) == 1 and len(outputs) == 1:
                predictor.demos = [dspy.Example(**{inputs[0]: q, outputs[0]: a}) for q, a in URIAL_EXAMPLES]
            elif name in targets:
                logger.info("URIAL examples skipped for predictor %r (needs one input and one output field)", name)
    return program
