"""The model registry: every model by its name, listed explicitly."""

from __future__ import annotations

import difflib

from mgnm.errors import ConfigError
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.bpr import BPR
from mgnm.models.lightgcn import LightGCN
from mgnm.models.mgnm import MGNM, LGMRec

MODELS: dict[str, type[Recommender]] = {
    "mgnm": MGNM,
    "lgmrec": LGMRec,
    "bpr": BPR,
    "lightgcn": LightGCN,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint}; known models: {', '.join(MODELS)}"
        ) from None


__all__ = ["MODELS", "ModelConfig", "Recommender", "get_model_class"]
