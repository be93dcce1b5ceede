"""LPM-Bench-mini metrics, one module each; each is validated on ground-truth footage against
shuffled, noise and static frames (`model_core.bench.validation`) before it is trusted."""
