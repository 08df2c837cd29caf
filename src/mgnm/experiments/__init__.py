"""Experiments layer: grids, seeds, the paper's tables, reports and plots."""
