"""The cold-start table: Recall@20 / NDCG@20 of the cold test items of `mgnm cold-split`
datasets, per model (mean ± std over seeds), beside the content kNN and popularity
references, ranked among the whole catalogue (default) or among the cold items only.

    python benchmarks/cold_start_table.py --weights last --run vbpr=RUN_s1,RUN_s2 \
        --run mgnm=... --data DATA_s1,DATA_s2 [--catalogue all|cold] [--json OUT.json]

With ``--catalogue all`` the table also gives the cold items' share of all top-20 slots
(their share of the catalogue is printed under the table) and the calibrated temperature of
each run's placement.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mgnm.predict.coldeval import REFERENCES, evaluate_cold


def mean_std(vals: list[float]) -> str:
    a = np.asarray(vals)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if a.size > 1 else 0:.4f}"


def row(name: str, results: list[dict], catalogue: str) -> str:
    cells = [mean_std([r["metrics"][k] for r in results]) for k in ("recall@20", "ndcg@20")]
    if catalogue == "all":
        cells.append(mean_std([r["cold_share_of_top"]["cold_share@20"] for r in results]))
    each = " / ".join(f"{r['metrics']['recall@20']:.4f}" + (f" (τ {r['tau']:g})" if "tau" in r
                                                              else "") for r in results)
    return f"| {name} | {len(results)} | {' | '.join(cells)} | {each} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="NAME=RUN1,RUN2")
    ap.add_argument("--data", required=True, help="the cold-split datasets, comma-separated")
    ap.add_argument("--split", default="test")
    ap.add_argument("--weights", default="best", choices=["best", "last"])
    ap.add_argument("--catalogue", default="all", choices=["all", "cold"])
    ap.add_argument("--json", help="also write every result as JSON")
    args = ap.parse_args()
    head = "| scorer | seeds | Recall@20 | NDCG@20 |"
    if args.catalogue == "all":
        head += " cold share of top-20 |"
    print(head + " Recall@20 per seed |")
    print("|---|---:|---:|---:|" + ("---:|" if args.catalogue == "all" else "") + "---|")
    everything: dict[str, list[dict]] = {}
    for spec in args.run:
        name, _, runs = spec.partition("=")
        res = [evaluate_cold(r, split=args.split, weights=args.weights,
                             catalogue=args.catalogue) for r in runs.split(",")]
        everything[name] = res
        print(row(name, res, args.catalogue), flush=True)
    refs = REFERENCES if args.catalogue == "all" else ("content-knn",)
    for ref in refs:
        res = [evaluate_cold(None, data=d, split=args.split, catalogue=args.catalogue,
                             reference=ref) for d in args.data.split(",")]
        everything[ref] = res
        print(row(ref, res, args.catalogue), flush=True)
    first = everything[refs[0]][0]
    print(f"\n{first['cold_items']} cold {args.split} items, {first['users']} users (first seed)"
          + (f"; cold items are {first['cold_share_of_catalogue']:.4f} of the "
             f"{first['catalogue_items']}-item catalogue" if args.catalogue == "all" else ""))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
