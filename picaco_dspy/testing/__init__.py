"""A scripted LM world whose PICACO optimum is known in advance, fault injection and attack corpora: for tests and
benchmarks of PICACO and of programs built on it (like DSPy's ``DummyLM``)."""
