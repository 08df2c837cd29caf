"""The search space shipped for every registered model: ``mgnm/configs/spaces/<model>.yaml``.

Each is the model's reference grid (docs/baselines.md, "Search spaces"), written in the
format of :mod:`mgnm.tune.space`, plus a learning-rate range shared by every model whose
grid does not already search it. ``mgnm spaces`` lists them; ``mgnm benchmark`` tunes every
model over its own.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mgnm.errors import ConfigError
from mgnm.models import MODELS, get_model_class


def _root():
    return resources.files("mgnm") / "configs" / "spaces"


def space_models() -> list[str]:
    """The models with a shipped space, in the registry's order."""
    have = {p.name[:-5] for p in _root().iterdir() if p.name.endswith(".yaml")}
    return [m for m in MODELS if m in have]


def space_path(model: str) -> Path:
    """The shipped space file of ``model`` (an unknown model is an error naming it)."""
    get_model_class(model)
    path = Path(str(_root() / f"{model}.yaml"))
    if not path.is_file():
        raise ConfigError(f"model {model!r} has no shipped search space (spaces: "
                          f"{', '.join(space_models())})")
    return path


def space_text(model: str) -> str:
    return space_path(model).read_text(encoding="utf-8")
