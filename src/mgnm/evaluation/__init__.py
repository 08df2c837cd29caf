"""Evaluation: full ranking, metrics, per-user results and comparisons of runs."""
