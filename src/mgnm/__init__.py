"""mgnm: MGNM and its baselines for multimodal recommendation on MMRec-format data."""

__version__ = "0.1.0"
