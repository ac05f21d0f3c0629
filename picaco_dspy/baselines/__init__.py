"""The paper's baselines (Q, Q+IF, URIAL, OPRO) and a harness that runs any method on one budget."""

from picaco_dspy.baselines.fixed import bare_program, urial_program, value_instruction_program
from picaco_dspy.baselines.opro import OPRO

__all__ = ["OPRO", "bare_program", "urial_program", "value_instruction_program"]
