"""Example data: deterministic synthetic catalogues for demos, tests and benchmarks."""
