"""Loss terms shared by several models (BASELINES.md, "Regularisers are not one thing")."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``mean(-log sigmoid(s+ - s-))`` (numerically stable softplus form)."""
    return F.softplus(neg_scores - pos_scores).mean()


def batch_norm_reg(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum_t ||t||_F / rows``: non-squared Frobenius norms of the batch rows, divided by the
    batch's row count (BPR, LightGCN, VBPR, LGMRec, MGNM)."""
    rows = tensors[0].shape[0]
    return sum(t.norm(p=2) for t in tensors) / rows


def squared_reg(*tensors: torch.Tensor, denominator: float) -> torch.Tensor:
    """``1/2 sum_t ||t||^2 / denominator`` (LATTICE, MGCN: divided by the configured batch size)."""
    return 0.5 * sum(t.pow(2).sum() for t in tensors) / denominator


def info_nce(a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor | None = None,
             temperature: float = 0.2, reduction: str = "mean") -> torch.Tensor:
    """Contrastive loss of rows ``a[r]`` against ``b[r]`` (cosine / temperature).

    The denominator runs over ``candidates`` (default: the rows of ``b``, so the other batch
    rows are the negatives). ``reduction``: ``"mean"`` or ``"sum"`` over rows.
    """
    a = F.normalize(a, dim=1)
    b = F.normalize(b, dim=1)
    cand = b if candidates is None else F.normalize(candidates, dim=1)
    pos = (a * b).sum(1) / temperature
    logits = a @ cand.T / temperature
    loss = torch.logsumexp(logits, dim=1) - pos
    return loss.sum() if reduction == "sum" else loss.mean()
