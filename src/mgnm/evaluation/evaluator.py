"""Full-ranking evaluation (docs/protocol.md, "Evaluation").

Every evaluated user is scored against every item by a dot product of the embeddings, which
the model computes once per evaluation pass; the user's training items are masked. At test
time validation items are not masked (MMRec's rule). Users without a training interaction
are not evaluated. The metrics (mgnm.evaluation.metrics, docs/evaluation.md) are all computed
from the one ranking each pass makes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mgnm.data.dataset import Dataset
from mgnm.evaluation.metrics import (
    LIST_METRICS,
    NEEDS_ITEMS,
    OLD_DEFAULT,
    USER_METRICS,
    Catalogue,
    RankedLists,
    check_metrics,
    known_metrics,
)

DEFAULT_TOPK = (5, 10, 20, 50)
METRICS = OLD_DEFAULT  # the metrics computed before the metrics key existed
CPU_BLOCK_SCORES = 1 << 22  # scores per evaluation block on a CPU (users x items)


def topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(k, dim=1)`` (values and indices, best first), faster on a CPU.

    Full ranking spends much of its time selecting 50 of thousands of scores per row, and
    torch's CPU top-k costs several nanoseconds per element where a maximum costs a tenth
    of one. The columns are dealt into ``g`` groups of ``s`` (column ``c`` into group
    ``c mod g``) and each group's maximum is taken; a row's ``k`` best scores all lie in the
    ``k`` groups with the highest maxima (a score outside them is beaten by those ``k``
    maxima), so top-k then runs over ``g`` maxima and ``k * s`` candidates instead of every
    column. The values equal ``torch.topk``'s exactly; among tied scores another tied index
    may be returned. Used on a CPU when a row has at least 16 times ``k`` columns.
    """
    n, q = scores.shape
    k = min(k, q)
    s = int(math.sqrt(q / max(k, 1)))  # group size minimising (q / s) + k * s
    if scores.device.type != "cpu" or s < 4 or not scores.is_contiguous():
        return scores.topk(k, dim=1)
    g = q // s  # number of groups; group j holds columns j, j + g, ..., j + (s - 1) g
    maxima = scores[:, :g * s].unflatten(1, (s, g)).amax(dim=1)
    best = maxima.topk(k, dim=1, sorted=False).indices  # the set is all that is needed
    offsets = torch.arange(s, device=scores.device) * g
    cand = (best[:, None, :] + offsets[None, :, None]).reshape(n, k * s)
    if g * s < q:  # the columns left over by the grouping are always candidates
        rest = torch.arange(g * s, q, device=scores.device).expand(n, -1)
        cand = torch.cat([cand, rest], dim=1)
    values, pos = scores.gather(1, cand).topk(k, dim=1)
    return values, cand.gather(1, pos)


def _csr(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr, items[order]


def _gather_rows(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray):
    """(local row, column) pairs of the given CSR rows, in one vectorised pass."""
    counts = indptr[users + 1] - indptr[users]
    rows = np.repeat(np.arange(users.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = indices[np.repeat(indptr[users], counts) + offsets]
    return rows, cols, counts


class _SplitPlan:
    """Precomputed per-batch masks and targets of one split (built once, reused every pass)."""

    def __init__(self, dataset: Dataset, split: str, batch_size: int, device: torch.device,
                 targets: np.ndarray | None = None):
        self.users = dataset.eval_users(split)
        if device.type == "cpu":  # a score block that stays in the caches (~16 MB)
            batch_size = min(batch_size, max(1, CPU_BLOCK_SCORES // max(dataset.n_items, 1)))
        train_ptr, train_idx = _csr(dataset.train.users, dataset.train.items, dataset.n_users)
        s = dataset.split(split)
        su, si = s.users, s.items
        if targets is not None:  # only these items count as relevant; users left without one
            keep = np.asarray(targets, dtype=bool)[si]  # are not evaluated
            su, si = su[keep], si[keep]
            self.users = self.users[np.isin(self.users, su)]
        tgt_ptr, tgt_idx = _csr(su, si, dataset.n_users)
        self.batches = []
        for start in range(0, self.users.size, batch_size):
            ub = self.users[start:start + batch_size]
            mr, mc, _ = _gather_rows(train_ptr, train_idx, ub)
            tr, tc, counts = _gather_rows(tgt_ptr, tgt_idx, ub)
            to = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
            self.batches.append(
                (to(ub), (to(mr), to(mc)), (to(tr), to(tc)), to(counts))
            )


@dataclass
class SplitResult:
    """One evaluation pass of a split: ``means[name@K]`` of every metric, and ``per_user``
    values of the per-user metrics aligned with ``users`` (ascending)."""

    users: np.ndarray
    means: dict[str, float]
    per_user: dict[str, np.ndarray]


class Evaluator:
    """Full-ranking evaluation of ``metrics`` (default: every registered metric) at ``ks``."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        ks: Sequence[int] = DEFAULT_TOPK,
        metrics: Sequence[str] | None = None,
        batch_size: int = 4096,
        device: torch.device | str = "cpu",
    ) -> None:
        self.dataset = dataset
        self.ks = tuple(sorted(ks))
        self.metrics = check_metrics(known_metrics() if metrics is None else metrics,
                                     "metrics")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._plans: dict[tuple[str, bytes | None], _SplitPlan] = {}
        self._catalogue: Catalogue | None = None

    @property
    def catalogue(self) -> Catalogue:
        """Training popularity and short head of the items (computed once)."""
        if self._catalogue is None:
            pop = np.bincount(self.dataset.train.items, minlength=self.dataset.n_items)
            self._catalogue = Catalogue.from_counts(pop, self.dataset.n_users, self.device)
        return self._catalogue

    def plan(self, split: str, targets: np.ndarray | None = None) -> _SplitPlan:
        key = (split, None if targets is None else np.packbits(targets).tobytes())
        if key not in self._plans:
            self._plans[key] = _SplitPlan(self.dataset, split, self.batch_size, self.device,
                                          targets)
        return self._plans[key]

    def n_users(self, split: str) -> int:
        return int(self.plan(split).users.size)

    def evaluate(
        self, user_emb: torch.Tensor, item_emb: torch.Tensor, split: str,
        *, per_user: bool = False,
    ) -> dict[str, float] | dict[str, np.ndarray]:
        """Mean metrics over the split's users (or per-user arrays of the per-user metrics
        with ``per_user=True``)."""
        res = self.evaluate_split(user_emb, item_emb, split)
        return res.per_user if per_user else res.means

    @torch.no_grad()
    def evaluate_split(
        self, user_emb: torch.Tensor, item_emb: torch.Tensor, split: str,
        *, targets: np.ndarray | None = None, metrics: Sequence[str] | None = None,
    ) -> SplitResult:
        """One full-ranking pass of ``split``: means and per-user values together.

        ``targets`` (a boolean mask over items) counts only those items as relevant; users
        with no relevant item left are then not evaluated. ``metrics`` narrows this pass.
        """
        plan = self.plan(split, targets)
        names = self.metrics if metrics is None else check_metrics(metrics, "metrics")
        per_names = [m for m in names if m in USER_METRICS]
        list_names = [m for m in names if m in LIST_METRICS]
        items_needed = any(m in NEEDS_ITEMS for m in names)
        cat = self.catalogue if items_needed else None
        kmax = max(self.ks)
        item_t = item_emb.t().contiguous()
        n_items = item_emb.shape[0]
        parts: dict[str, list[torch.Tensor]] = {}
        counts_at = {k: torch.zeros(n_items, dtype=torch.long, device=item_t.device)
                     for k in self.ks} if list_names else {}
        # one score block and one relevance mask for the whole pass (a fresh block per batch
        # costs page faults on a CPU); the mask is cleared again after each batch
        rows = max(ub.numel() for ub, *_ in plan.batches) if plan.batches else 0
        block = torch.empty(rows, n_items, dtype=item_t.dtype, device=item_t.device)
        relevant = torch.zeros(rows, n_items, dtype=torch.bool, device=item_t.device)
        for ub, (mr, mc), (tr, tc), counts in plan.batches:
            scores = torch.mm(user_emb[ub], item_t, out=block[:ub.numel()])
            scores[mr, mc] = -math.inf
            top = topk(scores, min(kmax, n_items))[1]
            relevant[tr, tc] = True
            hits = relevant[:ub.numel()].gather(1, top)
            relevant[tr, tc] = False
            if hits.shape[1] < kmax:
                pad = torch.zeros(hits.shape[0], kmax - hits.shape[1], dtype=torch.bool,
                                  device=hits.device)
                hits = torch.cat([hits, pad], 1)
            lists = RankedLists(hits, counts, top, cat)
            for k in self.ks:
                for m in per_names:
                    parts.setdefault(f"{m}@{k}", []).append(USER_METRICS[m](lists, k))
                if list_names:
                    counts_at[k] += torch.bincount(top[:, :k].reshape(-1), minlength=n_items)
        cat_parts = {k: torch.cat(v) for k, v in parts.items()}
        means = {k: float(v.mean()) if v.numel() else 0.0 for k, v in cat_parts.items()}
        for k in self.ks:
            for m in list_names:
                means[f"{m}@{k}"] = LIST_METRICS[m](counts_at[k], cat)
        per_user = {k: v.cpu().numpy() for k, v in cat_parts.items()}
        return SplitResult(plan.users.copy(), means, per_user)


@torch.no_grad()
def recommend_topk(
    user_emb: torch.Tensor, item_emb: torch.Tensor, users: np.ndarray, k: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None, batch_size: int = 4096,
    *, eligible: np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Top-``k`` items and scores of each of ``users`` (rows of ``user_emb``), best first.

    ``exclude`` = (users, items) pairs never returned (the users' training items);
    ``eligible`` = boolean mask of the items that may be returned (default: all). A user gets
    ``min(k, eligible items not excluded)`` items, so the lists may be shorter than ``k`` and
    never hold an excluded item or an infinite score. ``k`` must be at least 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    ptr = idx = None
    if exclude is not None:
        ptr, idx = _csr(np.asarray(exclude[0]), np.asarray(exclude[1]), n_users)
    allowed = np.ones(n_items, dtype=bool) if eligible is None else np.asarray(eligible, bool)
    blocked = torch.as_tensor(~allowed, device=item_emb.device)
    users = np.asarray(users, dtype=np.int64)
    out_i: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    for start in range(0, users.size, batch_size):
        ub = users[start:start + batch_size]
        scores = user_emb[torch.as_tensor(ub, device=user_emb.device)] @ item_emb.t()
        scores[:, blocked] = -math.inf
        n_ok = np.full(ub.size, int(allowed.sum()))
        if ptr is not None:
            r, c, _ = _gather_rows(ptr, idx, ub)
            hit = allowed[c]  # excluded pairs that would otherwise count as eligible
            key = np.unique(r[hit] * n_items + c[hit])  # each pair once
            r, c = key // n_items, key % n_items
            n_ok -= np.bincount(r, minlength=ub.size)
            dev = scores.device
            scores[torch.as_tensor(r, device=dev), torch.as_tensor(c, device=dev)] = -math.inf
        top_s, top_i = topk(scores.contiguous(), min(k, n_items))
        ti, ts = top_i.cpu().numpy(), top_s.cpu().numpy()
        for row, n in enumerate(np.minimum(n_ok, k)):
            out_i.append(ti[row, :n])
            out_s.append(ts[row, :n])
    return out_i, out_s
