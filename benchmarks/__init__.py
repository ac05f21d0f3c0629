"""Benchmarks that print numbers (run with python -m benchmarks.<name>)."""
