"""Cold-start evaluation: rank a split's cold items for each user who has one.

On a dataset made by ``mgnm cold-split`` the validation and test items have no training
interaction. For a split, the candidates are its cold items (those without a training
interaction); every user with a training interaction and at least one cold item in the split
is scored against all the candidates, and Recall@K / NDCG@K (the full-ranking formulas of
:func:`mgnm.train.evaluator.rank_metrics`) count the user's cold items of that split as
relevant. Nothing is masked: a user's training items are never candidates.

Two scorers: a run's model, whose cold items are placed from their content by the model's
cold-item method (:mod:`mgnm.predict.placement`), and a content-only kNN baseline, which
scores a cold item by the mean cosine similarity of its features to those of the user's
training items (per-modality cosines averaged).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnm.data.dataset import Dataset, load_dataset
from mgnm.errors import DataError
from mgnm.predict.placement import UnsupportedError, content_vectors
from mgnm.predict.predictor import Predictor
from mgnm.train import io
from mgnm.train.evaluator import rank_metrics

DEFAULT_KS = (10, 20, 50)


def cold_candidates(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, cold items, relevance matrix users x cold items) of ``split``."""
    s = dataset.split(split)
    warm = np.bincount(dataset.train.items, minlength=dataset.n_items) > 0
    has_train = np.bincount(dataset.train.users, minlength=dataset.n_users) > 0
    keep = ~warm[s.items] & has_train[s.users]
    cold = np.unique(s.items[~warm[s.items]])
    if cold.size == 0:
        raise DataError(f"{dataset.path or dataset.name}: the {split} split has no cold item "
                        f"(every item of it has a training interaction); make a cold-start "
                        f"split with `mgnm cold-split`")
    users = np.unique(s.users[keep])
    rel = np.zeros((users.size, cold.size), dtype=bool)
    rel[np.searchsorted(users, s.users[keep]), np.searchsorted(cold, s.items[keep])] = True
    return users, cold, rel


def rank_cold(scores: torch.Tensor, relevant: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean Recall@K / NDCG@K of ranking the candidate columns of ``scores`` per user."""
    kmax = max(ks)
    top = scores.topk(min(kmax, scores.shape[1]), dim=1).indices
    hits = torch.as_tensor(relevant).gather(1, top)
    if hits.shape[1] < kmax:
        hits = torch.cat([hits, torch.zeros(hits.shape[0], kmax - hits.shape[1],
                                            dtype=torch.bool)], 1)
    counts = torch.as_tensor(relevant.sum(1))
    metrics = rank_metrics(hits, counts, ks)
    return {f"{m}@{k}": float(metrics[f"{m}@{k}"].mean()) for m in ("recall", "ndcg")
            for k in ks}


def _summary(metrics: dict[str, float], users: np.ndarray, cold: np.ndarray, split: str,
             scorer: str) -> dict[str, Any]:
    return {"scorer": scorer, "split": split, "users": int(users.size),
            "cold_items": int(cold.size), "metrics": metrics}


@torch.no_grad()
def evaluate_cold_predictor(predictor: Predictor, dataset: Dataset, split: str = "test",
                            ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Cold-start metrics of a loaded run (its cold items placed from their content)."""
    if not predictor.placement.can_place_items:
        raise UnsupportedError(f"model {predictor.model_name!r} cannot embed items without "
                               f"interactions: {predictor.placement.why_no_cold}")
    users, cold, rel = cold_candidates(dataset, split)
    scores = predictor.user_emb[torch.as_tensor(users)] @ predictor.item_table[
        torch.as_tensor(cold)].T
    return _summary(rank_cold(scores, rel, ks), users, cold, split, predictor.model_name)


@torch.no_grad()
def evaluate_cold_knn(dataset: Dataset, split: str = "test",
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """The content-only kNN baseline: ``s(u, c) = mean_{j in train(u)} cos(f_c, f_j)``."""
    if not dataset.features:
        raise DataError(f"{dataset.path or dataset.name}: the content kNN baseline needs "
                        f"feature files (<modality>_feat.npy)")
    users, cold, rel = cold_candidates(dataset, split)
    content = content_vectors({m: torch.as_tensor(f) for m, f in dataset.features.items()})
    tr = dataset.train
    pick = np.isin(tr.users, users)
    rows = torch.as_tensor(np.searchsorted(users, tr.users[pick]))
    profile = torch.zeros(users.size, content.shape[1]).index_add_(
        0, rows, content[torch.as_tensor(tr.items[pick])])
    profile /= torch.bincount(rows, minlength=users.size).clamp_min(1).unsqueeze(1)
    scores = profile @ content[torch.as_tensor(cold)].T
    return _summary(rank_cold(scores, rel, ks), users, cold, split, "content-knn")


def evaluate_cold(run_dir: str | Path | None = None, *, data: str | Path | None = None,
                  split: str = "test", ks: Sequence[int] = DEFAULT_KS,
                  weights: str = "best") -> dict[str, Any]:
    """A run's cold-start metrics, or (``run_dir=None``) the content kNN baseline's on
    ``data``. ``weights="last"`` scores the last epoch's weights (``checkpoint.pt``) instead of
    the best validation epoch's: on a cold split the trainer's own validation scores cold
    items with the model's raw rows, which for most models carry no signal, so the best epoch
    can be the first; a fixed epoch budget then uses the last weights."""
    if run_dir is None:
        if data is None:
            raise DataError("give a run directory, or a dataset for the content kNN baseline")
        return evaluate_cold_knn(load_dataset(data), split, ks)
    from mgnm.api import load_run

    run = load_run(run_dir, data)
    if weights == "last":
        state = io.load_torch(Path(run_dir) / "checkpoint.pt")
        try:
            run.model.load_state_dict(state["model"])
        except (KeyError, TypeError, RuntimeError):
            raise DataError(f"{Path(run_dir) / 'checkpoint.pt'}: holds no weights of this "
                            f"run's model") from None
    elif weights != "best":
        raise DataError(f"weights {weights!r}: expected 'best' or 'last'")
    return evaluate_cold_predictor(Predictor.from_run(run), run.dataset, split, ks)
