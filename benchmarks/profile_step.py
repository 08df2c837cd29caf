"""Where a training step and an evaluation pass spend their time: torch profiler tables.

    python benchmarks/profile_step.py --data ../shared/data/baby --model mgnm \
        --random-features image:4096,text:384 --steps 10 --threads 2

Runs one warm-up epoch's worth of ``--warmup`` steps, then profiles ``--steps`` training steps
(sampling, forward, backward, Adam) and one validation pass, and prints, for each, the
operators sorted by their own (self) CPU time: total milliseconds, share, calls, and the
input shapes of the costliest call sites (``--shapes``). ``--json`` writes the rows as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import random_features, train_step, training_batches  # noqa: E402


def table(prof, top: int, by_shape: bool) -> list[dict]:
    events = prof.key_averages(group_by_input_shape=by_shape)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1000,
             "share": e.self_cpu_time_total / total, "calls": e.count,
             "shapes": str(e.input_shapes)[:90] if by_shape else ""} for e in rows]


def show(title: str, rows: list[dict], per: int) -> None:
    print(f"\n### {title}\n")
    print("| op | self ms (per step) | share | calls | input shapes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['op']} | {r['self_ms'] / per:.1f} | {100 * r['share']:.1f}% | "
              f"{r['calls'] // per} | {r['shapes']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--random-features", help="e.g. image:4096,text:384 (random, seeded)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--shapes", action="store_true", help="group by input shapes too")
    p.add_argument("--json", help="write the tables to this file")
    args = p.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from mgnm.data import load_dataset
    from mgnm.train.config import parse_set, resolve_config
    from mgnm.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    if args.random_features:
        ds = random_features(ds, args.random_features)
    cfg = resolve_config({"model": args.model, "threads": args.threads},
                         parse_set(args.set or []))
    trainer = Trainer(cfg, ds)
    batches = training_batches(trainer)

    def step() -> None:
        train_step(trainer, next(batches))

    for _ in range(args.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for _ in range(args.steps):
            step()
    train_rows = table(prof, args.top, args.shapes)
    trainer.evaluate(["valid"])  # warm the evaluation path
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        trainer.evaluate(["valid"])
    eval_rows = table(prof, args.top, args.shapes)
    show(f"{args.model} on {ds.name}: training step (mean of {args.steps}), "
         f"{args.threads} thread(s)", train_rows, args.steps)
    show(f"{args.model} on {ds.name}: one validation pass", eval_rows, 1)
    if args.json:
        Path(args.json).write_text(json.dumps({"train": train_rows, "eval": eval_rows,
                                               "steps": args.steps}, indent=1))


if __name__ == "__main__":
    main()
