"""The cold-start table: Recall@20 / NDCG@20 on the cold test items of `mgnm cold-split`
datasets, per model (mean ± std over seeds) and for the content-only kNN baseline.

    python benchmarks/cold_start_table.py --run vbpr=RUN_s1,RUN_s2 --run mgnm=... \
        --data DATA_s1,DATA_s2
"""

from __future__ import annotations

import argparse

import numpy as np

from mgnm.predict.coldeval import evaluate_cold


def row(name: str, results: list[dict]) -> str:
    cells = []
    for key in ("recall@20", "ndcg@20"):
        vals = np.array([r["metrics"][key] for r in results])
        cells.append(f"{vals.mean():.4f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.4f}")
    each = ", ".join(f"{r['metrics']['recall@20']:.4f}" for r in results)
    return f"| {name} | {len(results)} | {cells[0]} | {cells[1]} | {each} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=RUN1,RUN2")
    ap.add_argument("--data", required=True, help="the cold-split datasets, comma-separated")
    ap.add_argument("--split", default="test")
    ap.add_argument("--weights", default="best", choices=["best", "last"])
    args = ap.parse_args()
    print("| scorer | seeds | Recall@20 | NDCG@20 | Recall@20 per seed |")
    print("|---|---:|---:|---:|---|")
    for spec in args.run:
        name, _, runs = spec.partition("=")
        res = [evaluate_cold(r, split=args.split, weights=args.weights) for r in runs.split(",")]
        print(row(name, res), flush=True)
    knn = [evaluate_cold(None, data=d, split=args.split) for d in args.data.split(",")]
    print(row("content kNN", knn))
    print(f"\n{knn[0]['cold_items']} cold {args.split} items, {knn[0]['users']} users (first seed)")


if __name__ == "__main__":
    main()
