"""Cold-start evaluation: how well a split's cold items reach the users who took them.

On a dataset made by ``mgnm cold-split`` the validation and test items have no training
interaction. For a split, every user with a training interaction and at least one cold item
in the split is evaluated, with that user's cold items of the split as the relevant ones.
Recall@K and NDCG@K use the full-ranking formulas of
:func:`mgnm.evaluation.metrics.rank_metrics`. Two settings (``catalogue``):

- ``"all"`` (default, what users meet): each user's ranking holds the whole catalogue — every
  trained item and every cold item the scorer can place — with the user's training items
  masked. Beside the metrics: the cold items' share of all top-K slots, and their share of
  the catalogue, so a scorer that never lets a new item in shows it.
- ``"cold"``: only the split's cold items are ranked, against each other (nothing masked:
  they have no training interaction).

Scorers: a run's model (its cold items placed from their content by the model's cold-item
method, :mod:`mgnm.models.placement`), and two references computed from the data alone:
``content-knn`` scores an item by the mean cosine similarity of its features to those of the
user's training items (per-modality cosines averaged); ``popularity`` by its number of
training interactions (a cold item has none, so it shows what trained items alone achieve).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnm import storage
from mgnm.data.dataset import Dataset, load_dataset
from mgnm.errors import DataError, UnsupportedError
from mgnm.evaluation.metrics import rank_metrics
from mgnm.models.neighbours import content_vectors
from mgnm.predict.predictor import Predictor
from mgnm.runs import CHECKPOINT, load_run

DEFAULT_KS = (10, 20, 50)
CATALOGUES = ("all", "cold")
REFERENCES = ("content-knn", "popularity")
USER_BLOCK = 1024  # users scored at once against the whole catalogue


def _warm(dataset: Dataset) -> np.ndarray:
    return np.bincount(dataset.train.items, minlength=dataset.n_items) > 0


def cold_targets(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(evaluated users, their cold (user row, item) pairs of ``split``, the split's cold
    items): users with a training interaction and at least one cold item in the split."""
    s = dataset.split(split)
    warm = _warm(dataset)
    has_train = np.bincount(dataset.train.users, minlength=dataset.n_users) > 0
    keep = ~warm[s.items] & has_train[s.users]
    cold = np.unique(s.items[~warm[s.items]])
    if cold.size == 0:
        raise DataError(f"{dataset.path or dataset.name}: the {split} split has no cold item "
                        f"(every item of it has a training interaction); make a cold-start "
                        f"split with `mgnm cold-split`")
    users = np.unique(s.users[keep])
    return users, np.stack([np.searchsorted(users, s.users[keep]), s.items[keep]]), cold


def cold_candidates(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, cold items, relevance matrix users x cold items) of ``split``."""
    users, pairs, cold = cold_targets(dataset, split)
    rel = np.zeros((users.size, cold.size), dtype=bool)
    rel[pairs[0], np.searchsorted(cold, pairs[1])] = True
    return users, cold, rel


def _mean_metrics(hits: torch.Tensor, counts: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    kmax = max(ks)
    if hits.shape[1] < kmax:
        hits = torch.cat([hits, torch.zeros(hits.shape[0], kmax - hits.shape[1],
                                            dtype=torch.bool)], 1)
    metrics = rank_metrics(hits, counts, ks)
    return {f"{m}@{k}": float(metrics[f"{m}@{k}"].mean()) for m in ("recall", "ndcg")
            for k in ks}


def rank_cold(scores: torch.Tensor, relevant: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean Recall@K / NDCG@K of ranking the candidate columns of ``scores`` per user."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = torch.as_tensor(relevant).gather(1, top)
    return _mean_metrics(hits, torch.as_tensor(relevant.sum(1)), ks)


def rank_catalogue(score: Callable[[np.ndarray], torch.Tensor], dataset: Dataset, split: str,
                   eligible: np.ndarray, ks: Sequence[int]) -> dict[str, Any]:
    """Rank every eligible item for each evaluated user of ``split``, training items masked.

    ``score(users)`` gives the users' scores against all ``len(eligible)`` items (the
    dataset's items first; a scorer may know more items than the dataset, e.g. added ones).
    Returns the mean metrics and the cold items' share of the top-K slots and of the
    eligible catalogue, at each K."""
    users, pairs, cold = cold_targets(dataset, split)
    n_items = eligible.size
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[:dataset.n_items] = ~_warm(dataset)
    is_cold &= eligible
    train = dataset.train
    order = np.argsort(train.users, kind="stable")
    t_users, t_items = train.users[order], train.items[order]
    kmax = max(ks)
    blocked = torch.as_tensor(~eligible)
    hits_parts, counts_parts = [], []
    cold_slots = np.zeros(kmax)  # cold items at each rank, over all users
    n_slots = np.zeros(kmax)
    for start in range(0, users.size, USER_BLOCK):
        ub = users[start:start + USER_BLOCK]
        scores = score(ub).float().clone()
        if scores.shape != (ub.size, n_items):
            raise ValueError(f"scorer gave shape {tuple(scores.shape)}, expected "
                             f"{(ub.size, n_items)}")
        scores[:, blocked] = -torch.inf
        lo, hi = np.searchsorted(t_users, ub[0]), np.searchsorted(t_users, ub[-1], "right")
        seen_u, seen_i = t_users[lo:hi], t_items[lo:hi]
        mine = np.isin(seen_u, ub)  # users in between that are not evaluated are skipped
        seen_u, seen_i = seen_u[mine], seen_i[mine]
        scores[torch.as_tensor(np.searchsorted(ub, seen_u)), torch.as_tensor(seen_i)] = -torch.inf
        vals, top = scores.topk(min(kmax, n_items), dim=1)
        valid = torch.isfinite(vals).numpy()  # fewer eligible unseen items than K
        relevant = torch.zeros(ub.size, n_items, dtype=torch.bool)
        sel = (pairs[0] >= start) & (pairs[0] < start + ub.size)
        relevant[torch.as_tensor(pairs[0][sel] - start), torch.as_tensor(pairs[1][sel])] = True
        hits = relevant.gather(1, top) & torch.as_tensor(valid)
        hits_parts.append(hits)
        counts_parts.append(relevant.sum(1))
        top_np = top.numpy()
        cold_slots[:top_np.shape[1]] += (is_cold[top_np] & valid).sum(0)
        n_slots[:top_np.shape[1]] += valid.sum(0)
    metrics = _mean_metrics(torch.cat(hits_parts), torch.cat(counts_parts), ks)
    share = {f"cold_share@{k}": float(cold_slots[:k].sum() / max(n_slots[:k].sum(), 1))
             for k in ks}
    return {"users": int(users.size), "cold_items": int(cold.size),
            "metrics": metrics, "cold_share_of_top": share,
            "cold_share_of_catalogue": float(is_cold.sum() / max(eligible.sum(), 1)),
            "catalogue_items": int(eligible.sum())}


def _check(catalogue: str) -> None:
    if catalogue not in CATALOGUES:
        raise DataError(f"catalogue {catalogue!r}: expected one of {', '.join(CATALOGUES)}")


def _summary(scorer: str, split: str, catalogue: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"scorer": scorer, "split": split, "catalogue": catalogue, **body}


@torch.no_grad()
def evaluate_cold_predictor(predictor: Predictor, dataset: Dataset, split: str = "test",
                            ks: Sequence[int] = DEFAULT_KS,
                            catalogue: str = "all") -> dict[str, Any]:
    """Cold-start metrics of a loaded run (its cold items placed from their content)."""
    _check(catalogue)
    if not predictor.placement.can_place_items:
        raise UnsupportedError(f"model {predictor.model_name!r} cannot embed items without "
                               f"interactions: {predictor.placement.why_no_cold}")
    table = predictor.item_table
    placement = {"placement": predictor.placement.describe_cold(),
                 "tau": predictor.placement.calibration.tau}
    if catalogue == "cold":
        users, cold, rel = cold_candidates(dataset, split)
        scores = predictor.user_emb[torch.as_tensor(users)] @ table[torch.as_tensor(cold)].T
        body = {"users": int(users.size), "cold_items": int(cold.size),
                "metrics": rank_cold(scores, rel, ks)}
        return _summary(predictor.model_name, split, catalogue, {**body, **placement})

    def score(users: np.ndarray) -> torch.Tensor:
        return predictor.user_emb[torch.as_tensor(users)] @ table.T

    body = rank_catalogue(score, dataset, split, predictor.eligible.numpy(), ks)
    return _summary(predictor.model_name, split, catalogue, {**body, **placement})


def _content(dataset: Dataset) -> torch.Tensor:
    if not dataset.features:
        raise DataError(f"{dataset.path or dataset.name}: the content kNN reference needs "
                        f"feature files (<modality>_feat.npy)")
    return content_vectors({m: torch.as_tensor(f) for m, f in dataset.features.items()})


def _profiles(dataset: Dataset, content: torch.Tensor, users: np.ndarray) -> torch.Tensor:
    """Mean content row of each user's training items."""
    tr = dataset.train
    pick = np.isin(tr.users, users)
    rows = torch.as_tensor(np.searchsorted(users, tr.users[pick]))
    profile = torch.zeros(users.size, content.shape[1]).index_add_(
        0, rows, content[torch.as_tensor(tr.items[pick])])
    return profile / torch.bincount(rows, minlength=users.size).clamp_min(1).unsqueeze(1)


def _eligible_for_reference(dataset: Dataset) -> np.ndarray:
    """The items a reference ranks: every item with a training interaction or in a split
    (what a run's predictor recommends when its model places cold items)."""
    eligible = _warm(dataset).copy()
    for s in (dataset.valid, dataset.test):
        eligible[s.items] = True
    return eligible


@torch.no_grad()
def evaluate_reference(dataset: Dataset, scorer: str, split: str = "test",
                       ks: Sequence[int] = DEFAULT_KS, catalogue: str = "all") -> dict[str, Any]:
    """A data-only reference scorer: ``content-knn`` (``s(u, i) = mean_{j in train(u)}
    cos(f_i, f_j)``) or ``popularity`` (``s(u, i)`` = training interactions of ``i``)."""
    _check(catalogue)
    if scorer not in REFERENCES:
        raise DataError(f"reference {scorer!r}: expected one of {', '.join(REFERENCES)}")
    if catalogue == "cold":
        if scorer == "popularity":
            raise DataError("the popularity reference cannot rank cold items against each "
                            "other (none has a training interaction); use --catalogue all")
        users, cold, rel = cold_candidates(dataset, split)
        content = _content(dataset)
        scores = _profiles(dataset, content, users) @ content[torch.as_tensor(cold)].T
        body = {"users": int(users.size), "cold_items": int(cold.size),
                "metrics": rank_cold(scores, rel, ks)}
        return _summary(scorer, split, catalogue, body)
    if scorer == "popularity":
        pop = torch.as_tensor(np.bincount(dataset.train.items, minlength=dataset.n_items),
                              dtype=torch.float32)

        def score(users: np.ndarray) -> torch.Tensor:
            return pop.expand(users.size, -1)
    else:
        content = _content(dataset)

        def score(users: np.ndarray) -> torch.Tensor:
            return _profiles(dataset, content, users) @ content.T

    body = rank_catalogue(score, dataset, split, _eligible_for_reference(dataset), ks)
    return _summary(scorer, split, catalogue, body)


def evaluate_cold_knn(dataset: Dataset, split: str = "test", ks: Sequence[int] = DEFAULT_KS,
                      catalogue: str = "all") -> dict[str, Any]:
    """The content-only kNN reference (see :func:`evaluate_reference`)."""
    return evaluate_reference(dataset, "content-knn", split, ks, catalogue)


def evaluate_cold(run_dir: str | Path | None = None, *, data: str | Path | None = None,
                  split: str = "test", ks: Sequence[int] = DEFAULT_KS,
                  weights: str = "best", catalogue: str = "all",
                  reference: str = "content-knn") -> dict[str, Any]:
    """A run's cold-start metrics, or (``run_dir=None``) a reference scorer's on ``data``.

    ``weights="last"`` scores the last epoch's weights (``checkpoint.pt``) instead of the best
    validation epoch's: on a cold split the trainer's own validation scores cold items with the
    model's raw rows, which for most models carry no signal, so the best epoch can be the
    first; a fixed epoch budget then uses the last weights."""
    _check(catalogue)
    if run_dir is None:
        if data is None:
            raise DataError("give a run directory, or a dataset for a reference scorer")
        return evaluate_reference(load_dataset(data), reference, split, ks, catalogue)
    run = load_run(run_dir, data)
    if weights == "last":
        state = storage.load_torch(Path(run_dir) / CHECKPOINT)
        try:
            run.model.load_state_dict(state["model"])
        except (KeyError, TypeError, RuntimeError):
            raise DataError(f"{Path(run_dir) / 'checkpoint.pt'}: holds no weights of this "
                            f"run's model") from None
    elif weights != "best":
        raise DataError(f"weights {weights!r}: expected 'best' or 'last'")
    return evaluate_cold_predictor(Predictor.from_run(run), run.dataset, split, ks, catalogue)
