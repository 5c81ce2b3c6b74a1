"""Evaluation: figure reproduction, run comparison, benchmarks."""
