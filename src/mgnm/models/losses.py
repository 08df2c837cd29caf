"""Loss terms shared by several models (docs/baselines.md, "Regularisers are not one thing")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mgnm.data.graphs import l2_normalize


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
    a = l2_normalize(a)
    b = l2_normalize(b)
    cand = b if candidates is None else l2_normalize(candidates)
    pos = (a * b).sum(1) / temperature
    logits = a @ cand.T / temperature
    loss = torch.logsumexp(logits, dim=1) - pos
    return loss.sum() if reduction == "sum" else loss.mean()


LSE_BLOCK = 1 << 20  # exponentials per block of _BoundedLogSumExp (4 MB: stays in cache)
_LOG2_E = 1.4426950408889634  # log2(e)


class _BoundedLogSumExp(torch.autograd.Function):
    """``lse_r = log Σ_c exp(a_r · p_c)`` for logits known to lie in ``[-bound, bound]``.

    With bounded logits no per-row maximum is needed. The ``rows x candidates`` matrix of
    exponentials (LGMRec/MGNM's HCL: ~2,000 batch users against every user) is never held
    whole: it is formed block of rows by block of rows, small enough to stay in the CPU's
    caches, summed, and formed again block by block in the backward, where it is weighted
    by the incoming gradient and multiplied out. Recomputing costs one exponential per entry;
    holding the whole matrix cost more (a fresh allocation of hundreds of MB, page faults, and
    memory traffic) and as much memory again as the rest of a Baby-sized step.
    """

    @staticmethod
    def _blocks(a: torch.Tensor, p: torch.Tensor):
        if a.device.type == "cpu":
            step = max(1, LSE_BLOCK // max(p.shape[0], 1))
        else:  # a GPU forms the whole matrix at once
            step = max(1, a.shape[0])
        return [(s, min(s + step, a.shape[0])) for s in range(0, a.shape[0], step)]

    @staticmethod
    def _exp(a: torch.Tensor, p: torch.Tensor, shift: float) -> torch.Tensor:
        """``exp(a pᵀ - shift)``, as ``2 ** ((a log2 e) pᵀ - shift log2 e)``: torch's exp2 is
        ~3x faster than its exp on a CPU, and the factor is applied to the small ``a``."""
        e = (a * _LOG2_E) @ p.T
        if shift:
            e.sub_(shift * _LOG2_E)
        return e.exp2_()

    @staticmethod
    def forward(ctx, a: torch.Tensor, p: torch.Tensor, bound: float):  # type: ignore[override]
        shift = bound if bound > 60.0 else 0.0  # keep exp() within float32 range
        s = torch.cat([_BoundedLogSumExp._exp(a[i:j], p, shift).sum(1)
                       for i, j in _BoundedLogSumExp._blocks(a, p)])
        ctx.save_for_backward(a, p, s)
        ctx.shift = shift
        return s.log() + shift

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, p, s = ctx.saved_tensors
        scale = grad / s
        grad_a = torch.empty_like(a)
        grad_p = torch.zeros_like(p)
        narrow = p.shape[1] < 16  # narrow outputs: this orientation was ~3x faster on CPU
        for i, j in _BoundedLogSumExp._blocks(a, p):
            e = _BoundedLogSumExp._exp(a[i:j], p, ctx.shift)
            e.mul_(scale[i:j, None])  # the softmax weighted by the incoming gradient
            if narrow:
                grad_a[i:j] = (p.T @ e.T).T
                grad_p.add_((a[i:j].T @ e).T)
            else:
                grad_a[i:j] = e @ p
                grad_p.addmm_(e.T, a[i:j])
        return grad_a, grad_p, None


def contrast_all(anchor: torch.Tensor, positive: torch.Tensor, index: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """``Σ_r −log( exp(cos(a_r, p_r)/τ) / Σ_c exp(cos(a_r, p_c)/τ) )`` over the batch rows
    ``r = index[...]``, the denominator over **every** row ``c`` of ``positive``.

    (LGMRec's and MGNM's cross-modal HCL, eq. 16, summed over the batch.) A batch repeats
    users and items; each distinct row is computed once and weighted by its count, which
    gives the same value and gradient as the row-by-row sum at a fraction of the cost.
    """
    uniq, counts = torch.unique(index, return_counts=True)
    p_all = l2_normalize(positive)
    a = l2_normalize(anchor[uniq]) / temperature
    pos = (a * p_all[uniq]).sum(1)
    lse = _BoundedLogSumExp.apply(a, p_all, 1.0 / temperature)
    return ((lse - pos) * counts).sum()


def contrast_all_lowrank(anchor: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor,
                         index: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`contrast_all` with ``positive = weights @ basis`` (``basis``: B x d, B < d).

    Every candidate lies in the row space of ``basis``, so each cosine
    ``a · (w_c basis) / ||w_c basis||`` is the B-wide dot product ``(a basisᵀ) · w_c`` scaled
    by ``1/||w_c basis||``: the same value and gradient as the d-wide computation, with the
    big anchor-by-candidate product formed at width B. (MGNM's hypergraph embeddings are
    such products: ``Z = H̃ Λ`` with B hyperedges.)
    """
    uniq, counts = torch.unique(index, return_counts=True)
    positive = weights @ basis
    inv_norm = 1.0 / positive.norm(dim=1).clamp_min(1e-12)
    a = l2_normalize(anchor[uniq]) / temperature
    pos = (a * positive[uniq]).sum(1) * inv_norm[uniq]
    lse = _BoundedLogSumExp.apply(a @ basis.T, weights * inv_norm[:, None], 1.0 / temperature)
    return ((lse - pos) * counts).sum()
