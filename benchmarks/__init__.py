"""Benchmarks for tiermem (run as modules, e.g. `python -m benchmarks.core --quick`)."""
