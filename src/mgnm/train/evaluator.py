"""Full-ranking evaluation (docs/protocol.md, "Evaluation").

Every evaluated user is scored against every item by a dot product of the embeddings, which
the model computes once per evaluation pass; the user's training items are masked. At test
time validation items are not masked (MMRec's rule). Users without a training interaction
are not evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mgnm.data.dataset import Dataset

DEFAULT_TOPK = (5, 10, 20, 50)
METRICS = ("recall", "ndcg", "precision", "map")
CPU_BLOCK_SCORES = 1 << 22  # scores per evaluation block on a CPU (users x items)


def rank_metrics(
    hits: torch.Tensor, n_targets: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user metrics from a ranked hit matrix.

    ``hits[u, r]`` is 1 when the item at rank ``r + 1`` of user ``u`` is relevant (at least
    ``max(ks)`` columns); ``n_targets[u]`` is the user's number of relevant items (> 0).

    - ``recall@K = hits in top K / n_targets``
    - ``precision@K = hits in top K / K``
    - ``ndcg@K = sum_{hit at rank r <= K} 1/log2(r+1) / sum_{r=1..min(n_targets, K)} 1/log2(r+1)``
    - ``map@K = sum_{r <= K} precision@r * hit_r / min(n_targets, K)``
    """
    hits = hits.float()
    n_t = n_targets.float()
    kmax = max(ks)
    ranks = torch.arange(1, kmax + 1, device=hits.device, dtype=torch.float32)
    # the discounts on the CPU in float64, then rounded once: CUDA's log2 differs from the
    # CPU's in the last bit (an H200 gave 0.38685283 for 1/log2(6), the CPU 0.3868528)
    discount64 = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float64))
    discount = discount64.to(device=hits.device, dtype=torch.float32)
    ideal = discount64.cumsum(0).to(device=hits.device, dtype=torch.float32)
    cum_hits = hits[:, :kmax].cumsum(1)
    prec_at_r = cum_hits / ranks
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = cum_hits[:, k - 1]
        capped = torch.clamp(n_t, max=k)
        out[f"recall@{k}"] = h / n_t
        out[f"precision@{k}"] = h / k
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        out[f"ndcg@{k}"] = dcg / ideal[capped.long() - 1]
        out[f"map@{k}"] = (prec_at_r[:, :k] * hits[:, :k]).sum(1) / capped
    return out


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

    def __init__(self, dataset: Dataset, split: str, batch_size: int, device: torch.device):
        self.users = dataset.eval_users(split)
        if device.type == "cpu":  # a score block that stays in the caches (~16 MB)
            batch_size = min(batch_size, max(1, CPU_BLOCK_SCORES // max(dataset.n_items, 1)))
        train_ptr, train_idx = _csr(dataset.train.users, dataset.train.items, dataset.n_users)
        s = dataset.split(split)
        tgt_ptr, tgt_idx = _csr(s.users, s.items, dataset.n_users)
        self.batches = []
        for start in range(0, self.users.size, batch_size):
            ub = self.users[start:start + batch_size]
            mr, mc, _ = _gather_rows(train_ptr, train_idx, ub)
            tr, tc, counts = _gather_rows(tgt_ptr, tgt_idx, ub)
            to = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
            self.batches.append(
                (to(ub), (to(mr), to(mc)), (to(tr), to(tc)), to(counts))
            )


class Evaluator:
    def __init__(
        self,
        dataset: Dataset,
        *,
        ks: Sequence[int] = DEFAULT_TOPK,
        batch_size: int = 4096,
        device: torch.device | str = "cpu",
    ) -> None:
        self.dataset = dataset
        self.ks = tuple(sorted(ks))
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._plans: dict[str, _SplitPlan] = {}

    def plan(self, split: str) -> _SplitPlan:
        if split not in self._plans:
            self._plans[split] = _SplitPlan(self.dataset, split, self.batch_size, self.device)
        return self._plans[split]

    def n_users(self, split: str) -> int:
        return int(self.plan(split).users.size)

    @torch.no_grad()
    def evaluate(
        self, user_emb: torch.Tensor, item_emb: torch.Tensor, split: str,
        *, per_user: bool = False,
    ) -> dict[str, float] | dict[str, np.ndarray]:
        """Mean metrics over the split's users (or per-user arrays with ``per_user=True``)."""
        plan = self.plan(split)
        kmax = max(self.ks)
        item_t = item_emb.t().contiguous()
        n_items = item_emb.shape[0]
        parts: dict[str, list[torch.Tensor]] = {}
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
            for name, vals in rank_metrics(hits, counts, self.ks).items():
                parts.setdefault(name, []).append(vals)
        cat = {k: torch.cat(v) for k, v in parts.items()}
        if per_user:
            return {k: v.cpu().numpy() for k, v in cat.items()}
        return {k: float(v.mean()) if v.numel() else 0.0 for k, v in cat.items()}


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
