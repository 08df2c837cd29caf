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


LSE_BLOCK = 1 << 20  # exponentials per block of _WeightedLogSumExp (4 MB: stays in cache)
# ... but at least this many rows: every block adds a whole candidates x B gradient, so
# shrinking blocks as the candidates grow made that part grow with their square
LSE_MIN_ROWS = 8
_LOG2_E = 1.4426950408889634  # log2(e)


class _WeightedLogSumExp(torch.autograd.Function):
    """``Σ_r w_r lse_r`` with ``lse_r = log Σ_c exp(a_r · p_c)``, for logits known to lie in
    ``[-bound, bound]``, and its gradients, in one pass over the exponentials.

    With bounded logits no per-row maximum is needed. The ``rows x candidates`` matrix of
    exponentials (LGMRec/MGNM's HCL: ~2,000 batch users against every user) is never held
    whole: it is formed block of rows by block of rows, small enough to stay in the CPU's
    caches. A block holds whole rows, so each row's sum, and with it the row's softmax, is
    known inside the block; the output being a scalar, the gradients are that softmax
    weighted by ``w`` and multiplied out right there, and the backward only scales them by
    the incoming scalar. Holding the whole matrix cost a fresh allocation of hundreds of MB
    (page faults, memory traffic); forming it again in the backward cost a second product
    and exponential per entry.
    """

    @staticmethod
    def _blocks(a: torch.Tensor, p: torch.Tensor):
        if a.device.type == "cpu":
            step = max(LSE_MIN_ROWS, LSE_BLOCK // max(p.shape[0], 1))
        else:  # a GPU forms the whole matrix at once
            step = max(1, a.shape[0])
        return [(s, min(s + step, a.shape[0])) for s in range(0, a.shape[0], step)]

    @staticmethod
    def forward(ctx, a: torch.Tensor, p: torch.Tensor, w: torch.Tensor,  # type: ignore[override]
                bound: float, with_grad: bool):
        shift = bound if bound > 60.0 else 0.0  # keep exp() within float32 range
        total = a.new_zeros(())
        grad_a = torch.empty_like(a) if with_grad else None
        narrow = p.shape[1] < 16  # narrow outputs: this orientation was ~3x faster on CPU
        grad_p = None
        if with_grad:  # narrow: accumulated transposed (B x candidates), in the product itself
            grad_p = p.new_zeros(p.shape[1], p.shape[0]) if narrow else torch.zeros_like(p)
        for i, j in _WeightedLogSumExp._blocks(a, p):
            # exp(a pᵀ - shift) as 2 ** ((a log2 e) pᵀ - shift log2 e): torch's exp2 is ~3x
            # faster than its exp on a CPU, and the factor is applied to the small a
            e = (a[i:j] * _LOG2_E) @ p.T
            if shift:
                e.sub_(shift * _LOG2_E)
            e.exp2_()
            s = e.sum(1)
            total += (w[i:j] * (s.log() + shift)).sum()
            if with_grad:
                e.mul_((w[i:j] / s)[:, None])  # the rows' softmax, weighted
                if narrow:
                    grad_a[i:j] = (p.T @ e.T).T
                    grad_p.addmm_(a[i:j].T, e)
                else:
                    grad_a[i:j] = e @ p
                    grad_p.addmm_(e.T, a[i:j])
        if with_grad and narrow:
            grad_p = grad_p.T.contiguous()
        ctx.save_for_backward(grad_a, grad_p)
        ctx.with_grad = with_grad
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if not ctx.with_grad:
            raise RuntimeError("_WeightedLogSumExp was applied without gradients")
        grad_a, grad_p = ctx.saved_tensors
        return grad * grad_a, grad * grad_p, None, None, None


def weighted_logsumexp(a: torch.Tensor, p: torch.Tensor, weights: torch.Tensor,
                       bound: float) -> torch.Tensor:
    """``Σ_r weights_r log Σ_c exp(a_r · p_c)`` for logits within ``[-bound, bound]``
    (differentiable in ``a`` and ``p``; see :class:`_WeightedLogSumExp`)."""
    with_grad = torch.is_grad_enabled() and (a.requires_grad or p.requires_grad)
    return _WeightedLogSumExp.apply(a, p, weights.to(a.dtype), bound, with_grad)


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
    return weighted_logsumexp(a, p_all, counts, 1.0 / temperature) - (pos * counts).sum()


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
    lse = weighted_logsumexp(a @ basis.T, weights * inv_norm[:, None], counts, 1.0 / temperature)
    return lse - (pos * counts).sum()
