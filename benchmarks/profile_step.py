"""Where a training step and an evaluation pass spend their time: torch profiler tables.

    python benchmarks/profile_step.py --data ../shared/data/baby --model mgnm \
        --random-features image:4096,text:384 --steps 10 --threads 2

Runs one warm-up epoch's worth of ``--warmup`` steps, then profiles ``--steps`` training steps
(sampling, forward, backward, Adam) and one validation pass, and prints, for each, the
operators sorted by their own (self) CPU time: total milliseconds, share, calls, and the
input shapes of the costliest call sites (``--shapes``). ``--json`` writes the rows as well.

``--device cuda`` profiles on the GPU: the steps run under the trainer's own settings (its
deterministic-algorithms flag included), each table is printed twice, by self CPU time and
by self GPU time, and the mean wall time of a synchronised step is printed first.

    python benchmarks/profile_step.py --data DIR --model mgnm --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import random_features, train_step, training_batches  # noqa: E402


def table(prof, top: int, by_shape: bool, clock: str = "cpu") -> list[dict]:
    """The ``top`` operators by their own time on ``clock`` ("cpu", or "device": the GPU)."""
    attr = "self_cpu_time_total" if clock == "cpu" else "self_device_time_total"
    events = prof.key_averages(group_by_input_shape=by_shape)
    total = sum(getattr(e, attr) for e in events) or 1.0
    rows = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:top]
    return [{"op": e.key, "self_ms": getattr(e, attr) / 1000,
             "share": getattr(e, attr) / total, "calls": e.count,
             "shapes": str(e.input_shapes)[:90] if by_shape else ""} for e in rows]


def show(title: str, rows: list[dict], per: int, clock: str = "CPU") -> None:
    print(f"\n### {title}\n")
    print(f"| op | self {clock} ms (per step) | share | calls | input shapes |")
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
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", help="write the tables to this file")
    args = p.parse_args()

    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    from mgnm.config import parse_set, resolve_config
    from mgnm.data import load_dataset
    from mgnm.train.trainer import Trainer

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False")
    ds = load_dataset(args.data)
    if args.random_features:
        ds = random_features(ds, args.random_features)
    cfg = resolve_config({"model": args.model, "threads": args.threads, "device": args.device},
                         parse_set(args.set or []))
    trainer = Trainer(cfg, ds)
    batches = training_batches(trainer)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    clocks = ["cpu", "device"] if cuda else ["cpu"]

    def step() -> None:
        train_step(trainer, next(batches))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with trainer._own_state():  # the run's threads and deterministic-algorithms flag
        for _ in range(args.warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        wall_ms = (time.perf_counter() - t0) / args.steps * 1000
        with profile(activities=activities, record_shapes=args.shapes) as prof:
            for _ in range(args.steps):
                step()
            sync()
        train_rows = {c: table(prof, args.top, args.shapes, c) for c in clocks}
        trainer.evaluate(["valid"])  # warm the evaluation path
        with profile(activities=activities, record_shapes=args.shapes) as prof:
            trainer.evaluate(["valid"])
            sync()
        eval_rows = {c: table(prof, args.top, args.shapes, c) for c in clocks}
    where = f"{args.device}, {args.threads} thread(s)"
    print(f"{args.model} on {ds.name}: {wall_ms:.1f} ms per training step (mean of {args.steps}, "
          f"unprofiled, {where})")
    for c in clocks:
        name = "CPU" if c == "cpu" else "GPU"
        show(f"{args.model} on {ds.name}: training step (mean of {args.steps}), {where}",
             train_rows[c], args.steps, name)
        show(f"{args.model} on {ds.name}: one validation pass, {where}", eval_rows[c], 1, name)
    if args.json:
        Path(args.json).write_text(json.dumps({"train": train_rows["cpu"], "eval": eval_rows["cpu"],
                                               "train_gpu": train_rows.get("device"),
                                               "eval_gpu": eval_rows.get("device"),
                                               "wall_ms_per_step": wall_ms,
                                               "steps": args.steps}, indent=1))

if __name__ == "__main__":
    main()
