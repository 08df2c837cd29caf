"""Training layer: configs, the shared trainer, the full-ranking evaluator."""
