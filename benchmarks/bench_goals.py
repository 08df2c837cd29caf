"""The speed goals of issue 10 in one run, each workload beside an earlier version of the code.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_goals.py --data-root ../shared/data --threads 1,2 \
        --compare before=/tmp/before/src --epochs 5

Workloads (the paper's real settings on this machine's data):

- ``lightgcn-baby``: LightGCN on Amazon Baby (goal: <= 1.0 s/epoch, <= 0.5 s/evaluation);
- ``mgnm-tiktok``: MGNM with its defaults on TikTok (goal: <= 2.5 s/epoch);
- ``mgnm-baby-4096``: MGNM on Baby with seeded random 4096-d image and 384-d text tables,
  the paper's widths (goal: <= 12 s/epoch, <= 1.5 GB peak RSS, <= 1 s/evaluation);
- ``mgnm-baby-4096-bf16`` (not in the default list): the same with ``feature_dtype=bfloat16``.

Each (code version, workload, thread count) runs ``bench_epoch.py --single`` in a fresh
process with ``PYTHONPATH`` pointing at that version's ``src`` (``current`` is this checkout):
the median over ``--epochs`` training epochs and validation passes after one warm-up epoch,
and the process's peak RSS. Run it on an otherwise idle machine.

On a shared VM one process can run 30% slower than the next with the same code (its CPU
time grows too, so it is not waiting; memory placement is the likely cause). ``--rounds N``
repeats the whole sequence N times, the versions interleaved in every round, and ends with
a summary: per cell the median over the rounds and the range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURRENT = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from bench_epoch import run_fresh  # noqa: E402

# name -> (dataset directory, model, extra bench_epoch arguments, goals)
WORKLOADS = {
    "lightgcn-baby": ("baby", "lightgcn", [], {"epoch_s": 1.0, "eval_s": 0.5}),
    "mgnm-tiktok": ("tiktok", "mgnm", [], {"epoch_s": 2.5}),
    "mgnm-baby-4096": ("baby", "mgnm", ["--random-features", "image:4096,text:384"],
                       {"epoch_s": 12.0, "eval_s": 1.0, "peak_rss_mb": 1536}),
    # the same with the feature tables in bfloat16 (feature_dtype; needs a version that has it)
    "mgnm-baby-4096-bf16": ("baby", "mgnm", ["--random-features", "image:4096,text:384",
                                             "--set", "feature_dtype=bfloat16"],
                            {"epoch_s": 12.0, "eval_s": 1.0, "peak_rss_mb": 1536}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--workloads", default="lightgcn-baby,mgnm-tiktok,mgnm-baby-4096",
                   help=f"comma list of {', '.join(WORKLOADS)}")
    p.add_argument("--threads", default="2", help="comma list of thread counts")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--compare", action="append", default=[], metavar="NAME=SRC",
                   help="an earlier version's src directory to measure beside this one")
    p.add_argument("--no-current", action="store_true", help="measure only the --compare ones")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat everything this many times and summarise (median, range)")
    p.add_argument("--json", help="append every row to this JSON-lines file")
    args = p.parse_args()

    versions = [tuple(c.split("=", 1)) for c in args.compare]
    if not args.no_current:
        versions.append(("current", str(CURRENT)))
    rows = []
    print("| round | workload | threads | code | s/epoch | s/eval | peak RSS MB | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for rnd in range(1, args.rounds + 1):
        for name in args.workloads.split(","):
            data, model, extra, goals = WORKLOADS[name]
            for threads in (int(t) for t in args.threads.split(",")):
                for version, src in versions:
                    try:
                        r = run_fresh(Path(args.data_root) / data, model, epochs=args.epochs,
                                      threads=threads, extra=extra, src=src)
                    except RuntimeError as exc:
                        raise SystemExit(f"{version}: {exc}") from None
                    r.update(workload=name, code=version, round=rnd)
                    rows.append(r)
                    print(f"| {rnd} | {name} | {threads} | {version} | {r['epoch_s']:.2f} | "
                          f"{r['eval_s']:.2f} | {r['peak_rss_mb']} | {verdict(r, goals)} |",
                          flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    if args.rounds > 1:
        print(summary(rows))


def verdict(r: dict, goals: dict) -> str:
    goal = ", ".join(f"{k} <= {v}" for k, v in goals.items())
    return f"{goal}: {'met' if all(r[k] <= v for k, v in goals.items()) else 'not met'}"


def summary(rows: list[dict]) -> str:
    """Per (workload, threads, code): the median over the rounds, with the range."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["workload"], r["threads"], r["code"]), []).append(r)
    out = ["", f"median over {max(r['round'] for r in rows)} rounds (range)", "",
           "| workload | threads | code | s/epoch | s/eval | peak RSS MB | goal |",
           "|---|---|---|---|---|---|---|"]
    for (name, threads, code), rs in cells.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("epoch_s", "eval_s", "peak_rss_mb")}

        def rng(k: str, rs=rs) -> str:
            return f"{min(r[k] for r in rs):.2f}-{max(r[k] for r in rs):.2f}"

        out.append(f"| {name} | {threads} | {code} | {med['epoch_s']:.2f} ({rng('epoch_s')}) | "
                   f"{med['eval_s']:.2f} ({rng('eval_s')}) | {max(r['peak_rss_mb'] for r in rs)} | "
                   f"{verdict(med, WORKLOADS[name][3])} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
