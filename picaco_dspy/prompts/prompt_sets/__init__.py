"""Built-in prompt sets written by picaco-dspy, as JSONL data files."""
