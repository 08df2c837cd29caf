"""Fold-in versus trained user embeddings: test Recall@20 of a trained run's users when each
user's row comes from fold-in of its training items instead of from training.

    python benchmarks/fold_in_recall.py RUN_DIR [RUN_DIR ...]

One row per run, then (for models given several runs, e.g. seeds) each model's mean ± sample
standard deviation over its runs.

Both rows are scored against the same trained item table with the full-ranking evaluator
(training items masked, users without a training interaction not evaluated).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mgnm import api
from mgnm.evaluation.evaluator import Evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    print("| model | run | users | trained R@20 | fold-in R@20 | trained N@20 | fold-in N@20 "
          "| fold-in ms/user |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    by_model: dict[str, list[tuple[float, ...]]] = {}
    for run_dir in args.runs:
        run = api.load_run(run_dir)
        pred = api.Predictor.from_run(run)
        ds = run.dataset
        ev = Evaluator(ds, ks=(20,))
        users = ev.plan(args.split).users
        u_trained, items = run.model.final_embeddings()
        folded = u_trained.clone()
        tr = ds.train
        order = np.argsort(tr.users, kind="stable")
        starts = np.searchsorted(tr.users[order], np.arange(ds.n_users + 1))
        t0 = time.perf_counter()
        with torch.no_grad():
            for u in users:
                hist = tr.items[order[starts[u]:starts[u + 1]]]
                folded[u] = pred.placement.fold_in(torch.as_tensor(hist))
        ms = 1000 * (time.perf_counter() - t0) / max(len(users), 1)
        a = ev.evaluate(u_trained, items, args.split)
        b = ev.evaluate(folded, items, args.split)
        print(f"| {run.config.model} | {run_dir} | {len(users)} | {a['recall@20']:.4f} | "
              f"{b['recall@20']:.4f} | {a['ndcg@20']:.4f} | {b['ndcg@20']:.4f} | {ms:.2f} |")
        by_model.setdefault(run.config.model, []).append(
            (a["recall@20"], b["recall@20"], a["ndcg@20"], b["ndcg@20"]))
    if any(len(v) > 1 for v in by_model.values()):
        print()
        print("| model | runs | trained R@20 | fold-in R@20 | trained N@20 | fold-in N@20 |")
        print("|---|---:|---:|---:|---:|---:|")
        for model, rows in by_model.items():
            cells = []
            for col in zip(*rows, strict=True):
                sd = statistics.stdev(col) if len(col) > 1 else 0.0
                cells.append(f"{statistics.fmean(col):.4f} ± {sd:.4f}")
            print(f"| {model} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
