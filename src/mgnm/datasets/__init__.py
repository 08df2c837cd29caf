"""Datasets shipped with the package (see each directory's README.md for provenance)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO = "movielens"


def demo_path() -> Path:
    """Directory of the bundled demo dataset (MovieLens with text and genre modalities)."""
    return Path(str(resources.files("mgnm") / "datasets" / DEMO))
