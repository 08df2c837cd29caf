"""A trained run loaded once, answering from memory.

:class:`Predictor` keeps the final user and item tables of a run's best model and the
per-model pieces that place new users (fold-in) and new items (cold start), see
:mod:`mgnm.models.placement`. It speaks the dataset's original IDs where
``u_id_map.tsv``/``i_id_map.tsv`` exist and indices otherwise.

Which items are recommended (issue 12, item 5): an item is *eligible* when it has a training
interaction, or when the model can place it from its content (an item that occurs only in
validation or test, placed at load time with the model's cold-item method, and items added
later with :meth:`Predictor.add_items`). Items with no training interaction that the model
cannot place (every item of an ID-only model that is absent from training, and any index that
occurs in no split at all) are never recommended: their rows were never trained. Each answer
holds at most ``k`` items and fewer when fewer are eligible and unseen; never a seen item and
never an infinite score.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnm.data.dataset import Dataset
from mgnm.data.idmap import MAP_FILES, IdMap
from mgnm.errors import DataError
from mgnm.evaluation.evaluator import recommend_topk
from mgnm.models.placement import Placement, Trained, build_placement
from mgnm.predict.catalogue import Catalogue, CatalogueError
from mgnm.runs import load_run

MAX_K = 1000


class UnknownIdError(DataError):
    """A user or item ID the run does not know (HTTP 404)."""


class RequestError(DataError):
    """A malformed request; ``field`` names the offending part (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass
class Recommendation:
    user: str | int | None  # None for a user folded in from a history
    items: list[str | int]
    scores: list[float]
    titles: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "items": self.items, "scores": self.scores}
        if self.titles is not None:
            out["titles"] = self.titles
        return out


def _as_index(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, str) and x.strip().lstrip("-").isdigit():
        return int(x.strip())
    return None


def unknown_id_message(kind: str, given: Any, id_map: IdMap | None, n: int) -> str:
    """``unknown user '0'`` with what this dataset's IDs look like (a few real ones)."""
    if id_map is None:
        shown = repr(given) if isinstance(given, str) else str(given)
        return (f"unknown {kind} {shown}: this dataset has no {MAP_FILES[kind]}, so {kind}s "
                f"are indices 0..{n - 1}")
    examples = ", ".join(repr(x) for x in id_map.original[:3])
    hint = " (indices are not accepted where the dataset has an ID map)" \
        if _as_index(given) is not None else ""
    return (f"unknown {kind} {str(given)!r}: {kind}s are the original IDs of "
            f"{MAP_FILES[kind]}, e.g. {examples}{hint}")


def check_k(k: int, field: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise RequestError(field, f"must be an integer, got {k!r}")
    if k < 1:
        raise RequestError(field, f"must be at least 1 (got {k})")
    return int(k)


class Predictor:
    """A run's best model in memory: ``recommend``, ``recommend_for_history``, ``add_items``."""

    def __init__(self, model_name: str, dataset: Dataset, user_emb: torch.Tensor,
                 item_emb: torch.Tensor, placement: Placement) -> None:
        self.model_name = model_name
        self.dataset_name = dataset.name
        self.catalogue: Catalogue | None = None
        self.retired: frozenset[int] = frozenset()
        self.n_users = dataset.n_users
        self.n_trained_items = dataset.n_items
        self.user_map: IdMap | None = dataset.user_map
        self.item_map: IdMap | None = dataset.item_map
        self.feature_dims = {m: int(f.shape[1]) for m, f in dataset.features.items()}
        self.user_emb = user_emb
        self.placement = placement
        train = dataset.train
        self.has_train = np.bincount(train.users, minlength=self.n_users) > 0
        order = np.lexsort((train.items, train.users))
        self.seen_ptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(train.users, minlength=self.n_users), out=self.seen_ptr[1:])
        self.seen_items = train.items[order]
        warm = np.bincount(train.items, minlength=dataset.n_items) > 0
        self._lock = threading.Lock()
        # tables are replaced, never changed in place: a request reads a consistent pair
        self._items = (item_emb, torch.as_tensor(warm))
        if placement.can_place_items and not warm.all():
            self._place_known_items(dataset, ~warm)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, run_dir: str | Path, data: str | Path | Dataset | None = None,
             device: str = "cpu", catalogue: str | Path | Catalogue | None = None) -> Predictor:
        """Load the best model of ``run_dir`` (``data``: the dataset, if it moved).

        ``catalogue``: the store of items added and retired after training (a directory, see
        :mod:`mgnm.predict.catalogue`, or an opened :class:`Catalogue`); its changes are
        applied (added items placed by this run's model from their stored features) and
        later :meth:`add_items` and :meth:`retire` calls are written to it."""
        predictor = cls.from_run(load_run(run_dir, data, device))
        if catalogue is not None:
            predictor.attach(catalogue if isinstance(catalogue, Catalogue)
                             else Catalogue(catalogue))
        return predictor

    def attach(self, catalogue: Catalogue) -> None:
        """Apply the store's records to this predictor, then write later changes to it."""
        for n, record in enumerate(catalogue.records, 1):
            try:
                if record["op"] == "add":
                    items = record["items"]
                    feats = {m: [it["features"][m] for it in items] for m in self.feature_dims}
                    ids = [it["id"] for it in items]
                    got = self._add(feats, ids if self.item_map is not None else None,
                                    "items", None)
                    if got != ids:
                        raise RequestError("id", f"numbered {got}, stored as {ids}")
                else:
                    self._retire(record["ids"], "ids", None)
            except (KeyError, TypeError, DataError) as exc:
                raise CatalogueError(f"{catalogue.path}: record {n} does not apply to this "
                                     f"run ({exc})") from None
        self.catalogue = catalogue

    @classmethod
    @torch.no_grad()
    def from_run(cls, run: Any) -> Predictor:
        """From a :class:`mgnm.runs.LoadedRun` (anything with ``.model``, ``.dataset``)."""
        model, ds = run.model, run.dataset
        u, i = model.final_embeddings()
        u, i = u.cpu().float(), i.cpu().float()
        trained = Trained(
            user_emb=u, item_emb=i, train_users=ds.train.users, train_items=ds.train.items,
            features={m: torch.as_tensor(f).float() for m, f in ds.features.items()},
            warm=torch.as_tensor(np.bincount(ds.train.items, minlength=ds.n_items) > 0))
        return cls(model.name, ds, u, i, build_placement(model, trained))

    @torch.no_grad()
    def _place_known_items(self, dataset: Dataset, cold: np.ndarray) -> None:
        """Items of the data without a training interaction, placed from their content."""
        occurs = np.zeros(dataset.n_items, dtype=bool)
        for s in (dataset.valid, dataset.test):
            occurs[s.items] = True
        idx = np.flatnonzero(cold & occurs)
        if idx.size == 0:
            return
        feats = {m: torch.as_tensor(f[idx]).float() for m, f in dataset.features.items()}
        items, eligible = self._items
        items = items.clone()
        items[torch.as_tensor(idx)] = self.placement.cold_items(feats).float()
        eligible = eligible.clone()
        eligible[torch.as_tensor(idx)] = True
        self._items = (items, eligible)

    # ------------------------------------------------------------------ IDs
    @property
    def n_items(self) -> int:
        return int(self._items[0].shape[0])

    @property
    def item_table(self) -> torch.Tensor:
        return self._items[0]

    @property
    def eligible(self) -> torch.Tensor:
        return self._items[1]

    def _indices(self, ids: Sequence[Any], kind: str, id_map: IdMap | None, n: int,
                 field: str) -> np.ndarray:
        if id_map is not None:  # original IDs only: "2" may be both an ID and an index
            try:
                return id_map.index_of(str(x) for x in ids)
            except KeyError as exc:
                raise UnknownIdError(unknown_id_message(kind, exc.args[0], id_map, n)) \
                    from None
        out = []
        for x in ids:
            v = _as_index(x)
            if v is None and not isinstance(x, str):
                raise RequestError(field, f"{kind} ID {x!r} is not an integer index (the "
                                          f"dataset has no {kind} ID map)")
            if v is None or not 0 <= v < n:
                raise UnknownIdError(unknown_id_message(kind, x, None, n))
            out.append(v)
        return np.asarray(out, dtype=np.int64)

    def user_indices(self, users: Sequence[Any], field: str = "users") -> np.ndarray:
        return self._indices(users, "user", self.user_map, self.n_users, field)

    def item_indices(self, items: Sequence[Any], field: str = "items") -> np.ndarray:
        return self._indices(items, "item", self.item_map, self.n_items, field)

    def user_id(self, index: int) -> str | int:
        return self.user_map.original[index] if self.user_map else int(index)

    def item_ids(self, indices: np.ndarray) -> list[str | int]:
        if self.item_map is not None:
            return list(self.item_map.original_of(indices))
        return [int(i) for i in indices]

    def item_titles(self, indices: np.ndarray) -> list[str] | None:
        if self.item_map is None or "title" not in self.item_map.attributes:
            return None
        titles = self.item_map.attributes["title"]
        return [titles[int(i)] for i in indices]

    # ------------------------------------------------------------------ answers
    def _answer(self, user: Any, items: np.ndarray, scores: np.ndarray) -> Recommendation:
        return Recommendation(user, self.item_ids(items), [float(s) for s in scores],
                              self.item_titles(items))

    def _seen_pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = self.seen_ptr[users + 1] - self.seen_ptr[users]
        rows = np.repeat(np.arange(users.size), counts)
        starts = np.repeat(self.seen_ptr[users], counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.seen_items[starts + offsets]

    @torch.no_grad()
    def _topk(self, vectors: torch.Tensor, k: int,
              seen: tuple[np.ndarray, np.ndarray] | None) -> tuple[list, list]:
        items, eligible = self._items
        return recommend_topk(vectors, items, np.arange(vectors.shape[0]), k, seen,
                              eligible=eligible.numpy())

    def trained_users(self, users: np.ndarray, ids: Sequence[Any]) -> None:
        """Refuse users without a training interaction (their rows were never trained)."""
        bad = np.flatnonzero(~self.has_train[users])
        if bad.size:
            raise UnknownIdError(
                f"user {ids[bad[0]]!r} has no training interaction, so the model has no "
                f"trained embedding for it; recommend from its history instead (fold-in)")

    def recommend(self, users: Sequence[Any], k: int = 10,
                  exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``k`` eligible items for known users (their training items excluded)."""
        k = check_k(k)
        users = list(users)
        idx = self.user_indices(users)
        self.trained_users(idx, users)
        return [rec for batch in self.iter_recommend(idx, k, exclude_seen) for rec in batch]

    def iter_recommend(self, users: np.ndarray, k: int, exclude_seen: bool = True,
                       batch_size: int = 1024) -> Iterator[list[Recommendation]]:
        """Batches of answers for user indices (streaming, for every user of a big data set)."""
        k = check_k(k)
        for start in range(0, users.size, batch_size):
            ub = users[start:start + batch_size]
            seen = self._seen_pairs(ub) if exclude_seen else None
            items, scores = self._topk(self.user_emb[torch.as_tensor(ub)], k, seen)
            yield [self._answer(self.user_id(u), it, sc)
                   for u, it, sc in zip(ub, items, scores, strict=True)]

    def history_indices(self, history: Sequence[Any], field: str = "history") -> np.ndarray:
        history = list(history)
        if not history:
            raise RequestError(field, "must hold at least one item")
        idx = self.item_indices(history, field)
        late = np.flatnonzero(idx >= self.n_trained_items)
        if late.size:
            raise RequestError(f"{field}[{late[0]}]", f"item {history[late[0]]!r} was added "
                                                      f"after training and has no trained "
                                                      f"interactions to fold in")
        return np.unique(idx)

    @torch.no_grad()
    def fold_in(self, history: Sequence[Any]) -> torch.Tensor:
        """The embedding of a new user with these items (original IDs where the dataset
        has an item map, else indices)."""
        idx = self.history_indices(history)
        return self.placement.fold_in(torch.as_tensor(idx)).float()

    def recommend_for_history(self, history: Sequence[Any], k: int = 10,
                              exclude_seen: bool = True) -> Recommendation:
        """Top-``k`` for a user who is not in the training data, from its items (fold-in)."""
        k = check_k(k)
        idx = self.history_indices(history)
        with torch.no_grad():
            vec = self.placement.fold_in(torch.as_tensor(idx)).float()
        seen = (np.zeros(idx.size, dtype=np.int64), idx) if exclude_seen else None
        items, scores = self._topk(vec.unsqueeze(0), k, seen)
        return self._answer(None, items[0], scores[0])

    def add_items(self, features: dict[str, Any], ids: Sequence[str] | None = None,
                  field: str = "items") -> list[str | int]:
        """Make new items recommendable from their content: ``features[m]`` has one row per
        new item for every modality of the run. ``ids``: their original IDs (required, and
        new, when the dataset has an item map; not allowed otherwise: items are numbered).
        With a catalogue store attached, the items are durable when this returns."""
        return self._add(features, ids, field, self.catalogue)

    @torch.no_grad()
    def _add(self, features: dict[str, Any], ids: Sequence[str] | None, field: str,
             store: Catalogue | None) -> list[str | int]:
        if not self.placement.can_place_items:
            self.placement.cold_items({})  # raises the model's refusal
        missing = [m for m in self.feature_dims if m not in features]
        extra = [m for m in features if m not in self.feature_dims]
        if missing or extra:
            what = f"missing modality {missing[0]!r}" if missing else \
                f"unknown modality {extra[0]!r}"
            raise RequestError(f"{field}.features", f"{what}; the run uses "
                                                    f"{sorted(self.feature_dims)}")
        rows = {}
        n_new = None
        for m, dim in self.feature_dims.items():
            arr = np.asarray(features[m], dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise RequestError(f"{field}.features.{m}", f"expected rows of {dim} numbers, "
                                                            f"got shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise RequestError(f"{field}.features.{m}", "holds NaN or infinite values")
            if n_new is not None and arr.shape[0] != n_new:
                raise RequestError(f"{field}.features.{m}", "every modality needs one row "
                                                            "per new item")
            n_new = arr.shape[0]
            rows[m] = torch.as_tensor(arr, dtype=torch.float32)
        if not n_new:
            raise RequestError(field, "no items given")
        vectors = self.placement.cold_items(rows).float()
        with self._lock:
            items, eligible = self._items
            new_ids = self._new_ids(ids, n_new, field, items.shape[0])
            if store is not None:  # durable before it is visible
                store.append({"op": "add", "items": [
                    {"id": x, "features": {m: rows[m][j].tolist() for m in rows}}
                    for j, x in enumerate(new_ids)]})
            self._items = (torch.cat([items, vectors]),
                           torch.cat([eligible, torch.ones(n_new, dtype=torch.bool)]))
            if self.item_map is not None:
                self.item_map = self.item_map.extended([str(x) for x in new_ids])
            return list(new_ids)

    def retire(self, ids: Sequence[Any], field: str = "ids") -> list[str | int]:
        """Never recommend these items again (trained or added). With a catalogue store
        attached, the change is durable when this returns. Returns the IDs retired now
        (those already retired are left out)."""
        return self._retire(ids, field, self.catalogue)

    def _retire(self, ids: Sequence[Any], field: str, store: Catalogue | None) -> list:
        ids = list(ids)
        with self._lock:
            idx = self.item_indices(ids, field)
            fresh = [j for j, i in enumerate(idx) if int(i) not in self.retired]
            if not fresh:
                return []
            done = [ids[j] if self.item_map is not None else int(idx[j]) for j in fresh]
            if store is not None:
                store.append({"op": "retire", "ids": done})
            items, eligible = self._items
            eligible = eligible.clone()
            eligible[torch.as_tensor(idx)] = False
            self._items = (items, eligible)
            self.retired = self.retired | {int(i) for i in idx}
            return done

    def item_state(self, item: Any) -> str:
        """``trained`` (in the run's data), ``added`` (after training) or ``retired``."""
        i = int(self.item_indices([item], "item")[0])
        if i in self.retired:
            return "retired"
        return "trained" if i < self.n_trained_items else "added"

    def _new_ids(self, ids: Sequence[str] | None, n_new: int, field: str,
                 start: int) -> list[str | int]:
        """The new items' IDs: their given original IDs (checked: present, new, distinct)
        where the dataset has an item map, else the next ``n_new`` indices from ``start``."""
        if self.item_map is None:
            if ids is not None and any(x is not None for x in ids):
                raise RequestError(f"{field}[0].id", "this run's dataset has no i_id_map.tsv: "
                                                     "new items are numbered; leave out 'id'")
            return list(range(start, start + n_new))
        if ids is None or len(ids) != n_new or any(x is None or str(x) == "" for x in ids):
            raise RequestError(f"{field}.id", "every new item needs an 'id' (the dataset "
                                              "has an item ID map)")
        seen: set[str] = set()
        for j, x in enumerate(map(str, ids)):
            if self.item_map.contains(x) or x in seen:
                raise RequestError(f"{field}[{j}].id", f"item {x!r} already exists")
            seen.add(x)
        return [str(x) for x in ids]

    def info(self) -> dict[str, Any]:
        return {"model": self.model_name, "n_users": self.n_users, "n_items": self.n_items,
                "n_retired": len(self.retired),
                "fold_in": self.placement.fold_in_method or None,
                "cold_items": self.placement.describe_cold() or None}


def write_recommendations(predictor: Predictor, path: str | Path, k: int,
                          users: np.ndarray | None = None, exclude_seen: bool = True) -> int:
    """Stream top-``k`` lists of ``users`` (default: every user with a training interaction)
    to a TSV file ``user, rank, item, score[, title]`` with a header, written atomically (a
    temporary sibling renamed at the end). Returns the number of users written."""
    k = check_k(k)
    if users is None:
        users = np.flatnonzero(predictor.has_train)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(tsv_header(predictor) + "\n")
            for batch in predictor.iter_recommend(users, k, exclude_seen):
                f.write(format_rows(batch))
                n += len(batch)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise
    return n


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def tsv_header(predictor: Predictor) -> str:
    """The column names of :func:`format_rows`' lines: ``user, rank, item, score[, title]``."""
    titled = predictor.item_titles(np.zeros(1, dtype=np.int64)) is not None
    return "user\trank\titem\tscore" + ("\ttitle" if titled else "")


def format_rows(batch: list[Recommendation]) -> str:
    """Tab-separated lines ``user, rank, item, score[, title]``."""
    lines = []
    for rec in batch:
        titles = rec.titles or [None] * len(rec.items)
        for rank, (item, score, title) in enumerate(zip(rec.items, rec.scores, titles,
                                                        strict=True), 1):
            user = "" if rec.user is None else rec.user
            row = f"{user}\t{rank}\t{item}\t{score:.6f}"
            lines.append(row if title is None else f"{row}\t{title}")
    return "".join(line + "\n" for line in lines)
