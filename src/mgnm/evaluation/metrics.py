"""Ranking metrics as small registered functions (docs/evaluation.md gives every definition).

A metric is one function registered under its name. Two kinds:

- per-user metrics (:func:`user_metric`): ``fn(lists, k) -> tensor`` of one value per user
  of a :class:`RankedLists` batch; the evaluator averages them and keeps them per user;
- list-set metrics (:func:`list_metric`): ``fn(counts, catalogue) -> float`` of how often each
  item was recommended in all the evaluated users' top-K lists (``counts``, one per item);
  they have no per-user value.

Adding a metric is one decorated function (and its test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from mgnm.errors import ConfigError

HEAD_SHARE = 0.2  # the short head holds this share of the training interactions
ACCURACY = ("recall", "ndcg", "precision", "map", "hit", "mrr")
OLD_DEFAULT = ("recall", "ndcg", "precision", "map")


@dataclass(frozen=True)
class Catalogue:
    """What the beyond-accuracy metrics know of the items: training popularity and the head.

    ``popularity[i]`` = training interactions of item ``i``; ``n_users`` = users of the
    dataset (novelty's denominator); ``head[i]`` is True for the short-head items
    (:func:`short_head`). Items with no training interaction are not recommendable.
    """

    popularity: torch.Tensor  # float64, one per item
    n_users: int
    head: torch.Tensor  # bool, one per item

    @classmethod
    def from_counts(cls, popularity: np.ndarray, n_users: int,
                    device: torch.device | str = "cpu") -> Catalogue:
        pop = np.asarray(popularity, dtype=np.float64)
        return cls(torch.as_tensor(pop, device=device), int(n_users),
                   torch.as_tensor(short_head(pop), device=device))

    @cached_property
    def recommendable(self) -> torch.Tensor:
        return self.popularity > 0

    @cached_property
    def self_information(self) -> torch.Tensor:
        """``-log2(pop / n_users)`` per item; an item without training interaction counts as
        if it had one (the highest value a recommendable item can have)."""
        return -torch.log2(self.popularity.clamp(min=1.0) / self.n_users)


def short_head(popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """The short head: the most popular items (descending training popularity, ties by lower
    item index) taken until together they hold at least ``share`` of the training
    interactions. Every other item is in the long tail."""
    pop = np.asarray(popularity, dtype=np.float64)
    head = np.zeros(pop.size, dtype=bool)
    total = pop.sum()
    if total <= 0:
        return head
    order = np.argsort(-pop, kind="stable")
    cum = np.cumsum(pop[order])
    n_head = int(np.searchsorted(cum, share * total, side="left")) + 1
    head[order[:n_head]] = True
    return head


class RankedLists:
    """One batch of ranked lists: what every per-user metric reads.

    ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u`` is relevant (at
    least ``max(K)`` columns, padded with False); ``n_targets[u] > 0`` is the user's number of
    relevant items; ``top[u, r]`` the item at rank ``r + 1`` (may have fewer columns than
    ``hits`` when the catalogue is smaller than ``max(K)``); ``catalogue`` the items'
    popularity (needed only by the popularity metrics). Shared intermediate results are
    computed once per batch, on first use.
    """

    def __init__(self, hits: torch.Tensor, n_targets: torch.Tensor,
                 top: torch.Tensor | None = None, catalogue: Catalogue | None = None) -> None:
        self.hits = hits.float()
        self.n_targets = n_targets.float()
        self.top = top
        self.catalogue = catalogue
        self.kmax = hits.shape[1]

    @cached_property
    def cum_hits(self) -> torch.Tensor:
        return self.hits.cumsum(1)

    @cached_property
    def discounts(self) -> tuple[torch.Tensor, torch.Tensor]:
        # the discounts on the CPU in float64, then rounded once: CUDA's log2 differs from the
        # CPU's in the last bit (an H200 gave 0.38685283 for 1/log2(6), the CPU 0.3868528)
        d64 = 1.0 / torch.log2(torch.arange(2, self.kmax + 2, dtype=torch.float64))
        dev = self.hits.device
        return (d64.to(device=dev, dtype=torch.float32),
                d64.cumsum(0).to(device=dev, dtype=torch.float32))

    @cached_property
    def first_hit(self) -> torch.Tensor:
        """Rank (1-based) of the first relevant item; ``kmax + 1`` when there is none."""
        has = self.hits.bool().any(1)
        first = self.hits.argmax(1).float() + 1
        return torch.where(has, first, torch.full_like(first, self.kmax + 1))

    def _cat(self) -> Catalogue:
        if self.catalogue is None or self.top is None:
            raise ValueError("popularity metrics need the top-K items and the catalogue")
        return self.catalogue

    def item_values(self, name: str) -> torch.Tensor:
        """Per-item values (popularity, self_information, tail) gathered at the top items,
        once per batch and name."""
        cache = self.__dict__.setdefault("_gathered", {})
        if name not in cache:
            cat = self._cat()
            table = {"popularity": lambda: cat.popularity,
                     "self_information": lambda: cat.self_information,
                     "tail": lambda: (~cat.head).double()}[name]()
            cache[name] = table[self.top]
        return cache[name]

    def list_mean(self, name: str, k: int) -> torch.Tensor:
        """Mean over each user's top-``k`` list of an item value (float64 -> float32)."""
        vals = self.item_values(name)[:, :k]
        return vals.mean(1).float() if vals.shape[1] else torch.zeros(vals.shape[0])


UserMetric = Callable[[RankedLists, int], torch.Tensor]
ListMetric = Callable[[torch.Tensor, Catalogue], float]
USER_METRICS: dict[str, UserMetric] = {}
LIST_METRICS: dict[str, ListMetric] = {}
NEEDS_ITEMS: set[str] = set()  # metrics that read the top items and the catalogue


def user_metric(name: str, *, needs_items: bool = False) -> Callable[[UserMetric], UserMetric]:
    def register(fn: UserMetric) -> UserMetric:
        USER_METRICS[name] = fn
        if needs_items:
            NEEDS_ITEMS.add(name)
        return fn
    return register


def list_metric(name: str) -> Callable[[ListMetric], ListMetric]:
    def register(fn: ListMetric) -> ListMetric:
        LIST_METRICS[name] = fn
        NEEDS_ITEMS.add(name)
        return fn
    return register


@user_metric("recall")
def recall(r: RankedLists, k: int) -> torch.Tensor:
    """Relevant items in the top ``k`` / relevant items."""
    return r.cum_hits[:, k - 1] / r.n_targets


@user_metric("precision")
def precision(r: RankedLists, k: int) -> torch.Tensor:
    """Relevant items in the top ``k`` / ``k``."""
    return r.cum_hits[:, k - 1] / k


@user_metric("ndcg")
def ndcg(r: RankedLists, k: int) -> torch.Tensor:
    """``sum_{hit at r <= k} 1/log2(r+1)`` over its ideal, ``sum_{r <= min(n, k)} 1/log2(r+1)``."""
    discount, ideal = r.discounts
    capped = torch.clamp(r.n_targets, max=k)
    dcg = (r.hits[:, :k] * discount[:k]).sum(1)
    return dcg / ideal[capped.long() - 1]


@user_metric("map")
def average_precision(r: RankedLists, k: int) -> torch.Tensor:
    """``sum_{r <= k} precision@r * hit_r / min(n, k)``."""
    ranks = torch.arange(1, r.kmax + 1, device=r.hits.device, dtype=torch.float32)
    prec = r.__dict__.get("_prec_at_r")
    if prec is None:
        prec = r.__dict__["_prec_at_r"] = r.cum_hits / ranks
    return (prec[:, :k] * r.hits[:, :k]).sum(1) / torch.clamp(r.n_targets, max=k)


@user_metric("hit")
def hit(r: RankedLists, k: int) -> torch.Tensor:
    """1 when at least one relevant item is in the top ``k``, else 0."""
    return (r.cum_hits[:, k - 1] > 0).float()


@user_metric("mrr")
def reciprocal_rank(r: RankedLists, k: int) -> torch.Tensor:
    """1 / rank of the first relevant item when it is within the top ``k``, else 0."""
    first = r.first_hit
    return torch.where(first <= k, 1.0 / first, torch.zeros_like(first))


@user_metric("arp", needs_items=True)
def average_popularity(r: RankedLists, k: int) -> torch.Tensor:
    """Mean training popularity of the items in the top ``k``."""
    return r.list_mean("popularity", k)


@user_metric("aplt", needs_items=True)
def long_tail_share(r: RankedLists, k: int) -> torch.Tensor:
    """Share of the top ``k`` that lies in the long tail (not in :func:`short_head`)."""
    return r.list_mean("tail", k)


@user_metric("novelty", needs_items=True)
def novelty(r: RankedLists, k: int) -> torch.Tensor:
    """Mean self-information ``-log2(pop / n_users)`` of the items in the top ``k``."""
    return r.list_mean("self_information", k)


@list_metric("coverage")
def coverage(counts: torch.Tensor, cat: Catalogue) -> float:
    """Share of the recommendable items that are in at least one top-K list."""
    rec = cat.recommendable
    n = int(rec.sum())
    return float(((counts > 0) & rec).sum()) / n if n else 0.0


@list_metric("gini")
def gini(counts: torch.Tensor, cat: Catalogue) -> float:
    """Gini index of how often each recommendable item is recommended (0 = evenly, towards 1
    = a few items take every slot): ``sum_j (2j - n - 1) c_(j) / (n sum c)``, ``c`` sorted
    ascending, ``j = 1..n``."""
    c = counts[cat.recommendable].double().sort().values
    n, total = c.numel(), float(c.sum())
    if n == 0 or total == 0:
        return 0.0
    j = torch.arange(1, n + 1, dtype=torch.float64, device=c.device)
    return float(((2 * j - n - 1) * c).sum()) / (n * total)


def known_metrics() -> list[str]:
    return [*USER_METRICS, *LIST_METRICS]


def check_metrics(names: Iterable[str], where: str = "config key 'metrics'") -> tuple[str, ...]:
    """``names`` in the registry's order, or one :class:`ConfigError` naming the unknown one."""
    names = list(names)
    known = known_metrics()
    for n in names:
        if n not in known:
            raise ConfigError(f"{where}: unknown metric {n!r}; known metrics: {', '.join(known)}")
    return tuple(m for m in known if m in names)


def rank_metrics(hits: torch.Tensor, n_targets: torch.Tensor, ks: Sequence[int],
                 metrics: Sequence[str] = OLD_DEFAULT) -> dict[str, torch.Tensor]:
    """Per-user accuracy metrics ``name@K`` from a ranked hit matrix (no item information)."""
    lists = RankedLists(hits, n_targets)
    return {f"{m}@{k}": USER_METRICS[m](lists, k) for k in ks for m in metrics}
