"""Sparse propagation speed: which storage format and backward to use on this device.

    python benchmarks/bench_propagation.py --data ../shared/data/baby [--device cuda]

Times a LightGCN-style step (two propagations forward, then backward) on the training graph's
``D^-1/2 A D^-1/2`` with d = 64, for: mgnm's SparseOp in CSR and in COO (backward reuses the
symmetric matrix), and torch.sparse.mm on COO and CSR with torch's generic sparse backward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mgnm.data import build_inputs, load_dataset
from mgnm.data.sparse import SparseOp


def timeit(fn, device: torch.device, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    device = torch.device(args.device)
    ds = load_dataset(args.data)
    base = build_inputs(ds).norm_adj
    rows, cols, vals = base.coo()
    n = base.shape[0]
    x = torch.randn(n, 64, device=device, requires_grad=True)
    ops = {f: SparseOp(rows, cols, vals, base.shape, symmetric=True, device=device, fmt=f)
           for f in ("csr", "coo")}
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, base.shape).coalesce().to(device)
    csr = coo.to_sparse_csr()

    def ours(op):
        def step():
            y = op @ (op @ x)
            y.sum().backward()
        return step

    def generic(mat):
        def step():
            y = torch.sparse.mm(mat, torch.sparse.mm(mat, x))
            y.sum().backward()
        return step

    print(f"graph: {n} nodes, {base.nnz} non-zeros, d = 64, device {device}")
    print("| method | ms per step (2 propagations + backward) |")
    print("|---|---|")
    for name, fn in [("SparseOp csr (symmetric backward)", ours(ops["csr"])),
                     ("SparseOp coo (symmetric backward)", ours(ops["coo"])),
                     ("torch.sparse.mm coo, generic backward", generic(coo)),
                     ("torch.sparse.mm csr, generic backward", generic(csr))]:
        try:
            print(f"| {name} | {timeit(fn, device, args.repeat):.2f} |")
        except RuntimeError as exc:
            print(f"| {name} | unsupported ({str(exc).splitlines()[0][:60]}) |")


if __name__ == "__main__":
    main()
