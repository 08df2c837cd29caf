"""The model registry: every model by its name, listed explicitly."""

from __future__ import annotations

import difflib

from mgnm.errors import ConfigError
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.bm3 import BM3
from mgnm.models.bpr import BPR
from mgnm.models.dualgnn import DualGNN
from mgnm.models.freedom import FREEDOM
from mgnm.models.lattice import LATTICE
from mgnm.models.lightgcn import LightGCN
from mgnm.models.mgcn import MGCN
from mgnm.models.mgnm import MGNM, LGMRec
from mgnm.models.mmgcn import MMGCN
from mgnm.models.vbpr import VBPR

MODELS: dict[str, type[Recommender]] = {  # Table I's order, then FREEDOM, LGMRec, MGNM
    "bpr": BPR,
    "lightgcn": LightGCN,
    "vbpr": VBPR,
    "mmgcn": MMGCN,
    "dualgnn": DualGNN,
    "lattice": LATTICE,
    "bm3": BM3,
    "mgcn": MGCN,
    "freedom": FREEDOM,
    "lgmrec": LGMRec,
    "mgnm": MGNM,
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
