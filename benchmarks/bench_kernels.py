"""The single operations behind issue 10's CPU changes, timed alone (median of repeats).

    python benchmarks/bench_kernels.py --threads 1
    python benchmarks/bench_kernels.py --threads 2 --only feature,hcl

- ``feature``: MGNM's feature products at Baby's size (7,050 items x 4096-d): ``F W_m`` and
  ``F W1`` as two products against one product with the weights side by side, forward and
  backward, in float32 and in bfloat16 (``feature_dtype``).
- ``exp``: torch's ``exp_`` against ``exp2_`` per element, on blocks of 26, 104 and 1,900
  rows of 19,445 (HCL's exponentials).
- ``hcl``: ``contrast_all_lowrank`` (1,900 batch users against 19,445, B = 4, forward and
  backward) for several ``LSE_BLOCK`` sizes, the last one the whole matrix at once.
- ``spmm``: the CSR product with Baby's training matrix for 64, 128 and 192 columns
  (``R I`` and ``Rᵀ U``; needs ``--baby``), which is why tables are not propagated side by
  side.
- ``adam``: one Adam step over LightGCN's Baby-sized tables (19,445 + 7,050 rows x 64) with
  torch's default multi-tensor (``foreach``) kernel and with the fused one the trainer uses.
- ``hcl-rows``: HCL's log-sum-exp with its gradients (1,900 rows, B = 4) against 19,445,
  77,780 and 311,120 candidates (Baby's users at 1x, 4x, 16x), with ``LSE_MIN_ROWS`` 1 (the
  blocks shrinking with the candidates, as before) and 8.
- ``rows``: LightGCN's propagation (2 layers, d = 64) and its backward for one batch (2,048
  training pairs and 2,048 random negatives) of the graph in ``--graph`` (an MMRec dataset
  directory, e.g. one bench_scaling.py writes), whole tables then indexed against
  ``bipartite_layer_mean_rows``, and the batch rows picked by plain indexing (each pick's
  backward zero-filling a whole table, as before commit 512bf35), the three alternated.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

BABY = Path(__file__).resolve().parents[2] / "shared" / "data" / "baby"


def timed(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def feature(repeats: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    f = torch.rand(7050, 4096, generator=gen)
    w1, w2 = torch.randn(4096, 64, generator=gen), torch.randn(4096, 64, generator=gen)
    both = torch.cat([w1, w2], 1)
    g = torch.randn(7050, 128, generator=gen)
    fb, bothb, gb = f.bfloat16(), both.bfloat16(), g.bfloat16()
    rows = {
        "forward, two products F W (64 columns each)": lambda: (f @ w1, f @ w2),
        "forward, one product F [W_m | W1] (128 columns)": lambda: f @ both,
        "backward, two products Fᵀ G": lambda: (f.T @ g[:, :64], f.T @ g[:, 64:]),
        "backward, one product Fᵀ G": lambda: f.T @ g,
        "bfloat16 forward, one product": lambda: (fb @ bothb).float(),
        "bfloat16 backward, (Gᵀ F)ᵀ": lambda: (gb.T @ fb).T.float(),
    }
    for name, fn in rows.items():
        print(f"| feature | {name} | {timed(fn, repeats):.1f} ms |")


def exp(repeats: int) -> None:
    import torch

    for rows in (26, 104, 1900):
        x = torch.randn(rows, 19445)
        n = x.numel()
        copy = timed(lambda: x.clone(), repeats)  # noqa: B023
        for name in ("exp_", "exp2_"):
            t = timed(lambda: getattr(x.clone(), name)(), repeats)  # noqa: B023
            print(f"| exp | {name} on {rows} x 19445 | {1e6 * (t - copy) / n:.3f} ns/element |")


def hcl(repeats: int) -> None:
    import torch

    from mgnm.models import losses

    gen = torch.Generator().manual_seed(0)
    n_all, b = 19445, 4
    anchor = torch.randn(n_all, 64, generator=gen, requires_grad=True)
    weights = torch.softmax(torch.randn(n_all, b, generator=gen), 1).requires_grad_(True)
    basis = torch.randn(b, 64, generator=gen, requires_grad=True)
    index = torch.randint(0, n_all, (2048,), generator=gen)  # ~1,900 distinct users

    def step() -> None:
        losses.contrast_all_lowrank(anchor, weights, basis, index, 0.2).backward()

    default = losses.LSE_BLOCK
    try:
        for block in (1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 30):
            losses.LSE_BLOCK = block
            what = "whole matrix" if block == 1 << 30 else f"{4 * block / 2**20:g} MB blocks"
            print(f"| hcl | forward + backward, {what} | {timed(step, repeats):.1f} ms |")
    finally:
        losses.LSE_BLOCK = default


def spmm(repeats: int, baby: Path) -> None:
    import torch

    from mgnm.data import load_dataset
    from mgnm.data.graphs import interaction_matrix

    ds = load_dataset(baby)
    r = interaction_matrix(ds.train.users, ds.train.items, ds.n_users, ds.n_items, norm="sym")
    for width in (64, 128, 192):
        i, u = torch.randn(ds.n_items, width), torch.randn(ds.n_users, width)
        print(f"| spmm | R I, {width} columns | {timed(lambda: r.mm(i), repeats):.2f} ms |")  # noqa: B023
        print(f"| spmm | Rᵀ U, {width} columns | {timed(lambda: r.T.mm(u), repeats):.2f} ms |")  # noqa: B023


def adam(repeats: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    other = torch.empty(64 << 18)  # 64 MB written between steps, as a training step's
    # forward and backward would: the tables are not in the caches when Adam runs
    for kind in ("foreach", "fused"):
        params = [torch.nn.Parameter(torch.randn(rows, 64, generator=gen)) for rows in (19445, 7050)]
        for q in params:
            q.grad = torch.randn(q.shape, generator=gen)
        opt = torch.optim.Adam(params, lr=1e-3, **{kind: True})
        times: list[float] = []
        for _ in range(repeats + 1):  # the first step (creating the moments) is not counted
            other.fill_(1.0)
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        times = times[1:]
        print(f"| adam | one step, {kind} (cold caches) | "
              f"{1000 * statistics.median(times):.2f} ms |")


def hcl_rows(repeats: int) -> None:
    import torch

    from mgnm.models import losses

    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(1900, 4, generator=gen), dim=1).mul(5)
    a.requires_grad_(True)
    w = torch.randint(1, 3, (1900,), generator=gen).float()
    default = losses.LSE_MIN_ROWS
    try:
        for n in (19445, 77780, 311120):
            p = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1)
            p.requires_grad_(True)

            def step() -> None:
                torch.autograd.grad(losses.weighted_logsumexp(a, p, w, 5.0), [a, p])  # noqa: B023

            for floor in (1, 8):
                losses.LSE_MIN_ROWS = floor
                print(f"| hcl-rows | {n} candidates, at least {floor} rows per block | "
                      f"{timed(step, repeats):.1f} ms |")
    finally:
        losses.LSE_MIN_ROWS = default


def rows(repeats: int, graph: Path) -> None:
    import torch

    from mgnm.data import load_dataset
    from mgnm.data.graphs import interaction_matrix
    from mgnm.models.propagation import (
        batch_row_plan,
        bipartite_layer_mean,
        bipartite_layer_mean_rows,
        layer_means,
    )

    ds = load_dataset(graph)
    r = interaction_matrix(ds.train.users, ds.train.items, ds.n_users, ds.n_items, norm="sym")
    gen = torch.Generator().manual_seed(0)
    u0 = torch.randn(ds.n_users, 64, generator=gen, requires_grad=True)
    i0 = torch.randn(ds.n_items, 64, generator=gen, requires_grad=True)
    pick = torch.randint(0, len(ds.train), (2048,), generator=gen)
    user_rows = torch.as_tensor(ds.train.users)[pick].unique()
    items = torch.cat([torch.as_tensor(ds.train.items)[pick],
                       torch.randint(0, ds.n_items, (2048,), generator=gen)])
    item_rows = items.unique()

    def whole() -> None:
        eu, ei = bipartite_layer_mean(u0, i0, r, 2)
        (eu[user_rows].sum() + ei[item_rows].sum()).backward()

    def batch() -> None:
        eu, ei = bipartite_layer_mean_rows(u0, i0, r, 2, user_rows, item_rows)
        (eu.sum() + ei.sum()).backward()

    def indexed() -> None:  # the same plan, every layer's batch rows picked by indexing
        def pick(table, rows, want):
            return table[want] if rows is None else table[torch.searchsorted(rows, want)]

        def whole_of(table, rows, n):
            return table if rows is None else table.new_zeros(n, 64).index_copy(0, rows, table)

        picked, prev_u, prev_i = [(u0[user_rows], i0[item_rows])], u0, i0
        plan = batch_row_plan(r, 2, user_rows, item_rows)
        for depth, (rows_u, rows_i) in enumerate(plan, start=1):
            u = r @ prev_i if rows_u is None else r.rows_mm(rows_u, prev_i)
            i = r.T @ prev_u if rows_i is None else r.T.rows_mm(rows_i, prev_u)
            picked.append((pick(u, rows_u, user_rows), pick(i, rows_i, item_rows)))
            if depth < 2:
                prev_u = whole_of(u, rows_u, ds.n_users)
                prev_i = whole_of(i, rows_i, ds.n_items)
        eu, ei = layer_means(picked)
        (eu.sum() + ei.sum()).backward()

    variants = {"whole tables": whole, "batch rows": batch, "batch rows, indexed": indexed}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for k in range(repeats + 1):  # alternated; the first round is a warm-up
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            if k:
                times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        print(f"| rows | {graph.name}: {name} | {1000 * statistics.median(t):.1f} ms |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--only", default="feature,exp,hcl,spmm,adam")
    p.add_argument("--baby", type=Path, default=BABY, help="Baby's directory (for spmm)")
    p.add_argument("--graph", type=Path, default=BABY, help="a dataset directory (for rows)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s)\n\n| kernel | what | median |\n|---|---|---|")
    for name in args.only.split(","):
        if name in ("spmm", "rows"):
            where = args.baby if name == "spmm" else args.graph
            if where.is_dir():
                (spmm if name == "spmm" else rows)(args.repeats, where)
            else:
                print(f"| {name} | skipped: {where} is absent | |")
        else:
            {"feature": feature, "exp": exp, "hcl": hcl, "adam": adam,
             "hcl-rows": hcl_rows}[name](args.repeats)


if __name__ == "__main__":
    main()
