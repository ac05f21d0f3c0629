"""Prompt sets: the built-in ones shipped with the package, and loaders for JSONL, CSV and Hugging Face datasets."""

from picaco_dspy.prompts.loading import builtin_prompt_set, load_prompts, prompts_for_values, to_examples

__all__ = ["builtin_prompt_set", "load_prompts", "prompts_for_values", "to_examples"]
