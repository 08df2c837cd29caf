"""What early stopping would have reported for runs trained without it (patience huge).

    python scripts/replay_stopping.py RUN_DIR [RUN_DIR ...] --patience 20 --windows 1,5,10

For each stopping rule (patience P, moving-average window W over the validation metric) and
for "no early stopping" (every epoch of the log), prints each run's stop epoch, best epoch
and test metrics, then mean ± sample std over the runs (e.g. seeds). Training does not
depend on when it stops, so a replay equals a run made with that rule
(tests/test_reproducibility.py checks this identity).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mgnm.runs import read_config, read_log
from mgnm.train.stopping import replay


def mean_std(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--windows", default="1,5,10")
    ap.add_argument("--metrics", default="recall@20,ndcg@20")
    args = ap.parse_args()
    metrics = args.metrics.split(",")
    valid_metric = read_config(args.runs[0]).train.valid_metric
    logs = {r: read_log(r) for r in args.runs}
    rules = [(f"patience {args.patience}, window {w}", args.patience, int(w))
             for w in args.windows.split(",")]
    rules.append(("no early stopping", 10**9, 1))
    print(f"| rule | {' | '.join(f'test {m}' for m in metrics)} | per run: stop / best epoch, "
          f"test {metrics[0]} |")
    print("|---" * (len(metrics) + 2) + "|")
    for label, patience, window in rules:
        outs = [replay(logs[r], valid_metric, patience, window) for r in args.runs]
        cells = [mean_std([o["test"][m] for o in outs]) for m in metrics]
        per = "; ".join(f"{o['stop_epoch']} / {o['best_epoch']}, {o['test'][metrics[0]]:.4f}"
                        for o in outs)
        print(f"| {label} | {' | '.join(cells)} | {per} |")


if __name__ == "__main__":
    main()
