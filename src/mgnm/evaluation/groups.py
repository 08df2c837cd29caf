"""Metrics by group: users by training degree, targets by item popularity (docs/evaluation.md).

- ``users:degree[:N]`` — the evaluated users in ``N`` quantile groups (default 4) of their
  number of training interactions. Edges are the degree quantiles at ``j/N``; a user whose
  degree equals an inner edge belongs to the higher group, so users of the same degree are
  always in one group (groups may differ in size, and one may be empty).
- ``items:popularity`` — accuracy metrics counting only the short-head targets, then only the
  long-tail targets (the head/tail rule of ``aplt``, :func:`~mgnm.evaluation.metrics.short_head`);
  a user with no target in a group is not counted in that group's means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mgnm.errors import MgnmError
from mgnm.evaluation.evaluator import Evaluator
from mgnm.evaluation.metrics import ACCURACY

GROUPINGS = ("users:degree[:N]", "items:popularity")
DEFAULT_DEGREE_GROUPS = 4


class GroupError(MgnmError):
    """A ``--by`` grouping that is unknown or malformed."""


@dataclass(frozen=True)
class Grouping:
    kind: str  # "users:degree" or "items:popularity"
    n: int = DEFAULT_DEGREE_GROUPS


@dataclass
class GroupRow:
    """One group: its name, number of users counted, and mean ``name@K`` values."""

    group: str
    users: int
    means: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"group": self.group, "users": self.users, "metrics": self.means}


def parse_grouping(spec: str) -> Grouping:
    """``users:degree``, ``users:degree:N`` (N >= 1) or ``items:popularity``."""
    parts = spec.split(":")
    if parts[:2] == ["users", "degree"] and len(parts) in (2, 3):
        if len(parts) == 2:
            return Grouping("users:degree")
        if parts[2].isdigit() and int(parts[2]) >= 1:
            return Grouping("users:degree", int(parts[2]))
        raise GroupError(f"--by {spec!r}: N must be a whole number of groups, at least 1")
    if spec == "items:popularity":
        return Grouping("items:popularity", 2)
    raise GroupError(f"--by {spec!r}: unknown grouping; use one of {', '.join(GROUPINGS)}")


def degree_groups(degrees: np.ndarray, n: int) -> np.ndarray:
    """Group index (0..n-1) of each degree: quantile edges at ``j/n``, a degree equal to an
    inner edge in the higher group."""
    degrees = np.asarray(degrees, dtype=np.float64)
    if degrees.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(degrees, np.linspace(0.0, 1.0, n + 1))
    return np.searchsorted(edges[1:-1], degrees, side="right").astype(np.int64)


def _means(per_user: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean(v[rows], dtype=np.float64)) for k, v in per_user.items()}


def group_metrics(evaluator: Evaluator, user_emb: torch.Tensor, item_emb: torch.Tensor,
                  split: str, grouping: Grouping) -> list[GroupRow]:
    """One row per group of ``split``'s users (see the module's docstring)."""
    ds = evaluator.dataset
    if grouping.kind == "users:degree":
        per = [m for m in evaluator.metrics if m not in ("coverage", "gini")]
        res = evaluator.evaluate_split(user_emb, item_emb, split, metrics=per)
        degree = np.bincount(ds.train.users, minlength=ds.n_users)[res.users]
        gid = degree_groups(degree, grouping.n)
        rows = []
        for g in range(grouping.n):
            sel = np.flatnonzero(gid == g)
            name = (f"degree {int(degree[sel].min())}-{int(degree[sel].max())}" if sel.size
                    else "(empty)")
            rows.append(GroupRow(f"Q{g + 1} {name}", int(sel.size),
                                 _means(res.per_user, sel) if sel.size else {}))
        return rows
    acc = [m for m in evaluator.metrics if m in ACCURACY]
    head = evaluator.catalogue.head.cpu().numpy()
    rows = []
    for name, mask in (("head targets", head), ("tail targets", ~head)):
        res = evaluator.evaluate_split(user_emb, item_emb, split, targets=mask, metrics=acc)
        rows.append(GroupRow(name, int(res.users.size), res.means if res.users.size else {}))
    return rows
