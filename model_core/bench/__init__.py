"""Benchmarks as commands with JSON output (`lpm bench ...`), never timed asserts."""
