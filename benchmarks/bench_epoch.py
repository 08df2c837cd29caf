"""Seconds per training epoch, seconds per full evaluation pass, and peak memory.

    python benchmarks/bench_epoch.py --data ../shared/data/baby --model lightgcn \
        --set n_layers=2 --epochs 3
    python benchmarks/bench_epoch.py --data ../shared/data/baby --model mgnm \
        --random-features image:4096,text:384 --epochs 2
    python benchmarks/bench_epoch.py --data ../shared/data/tiktok --model all --epochs 2

Each model runs in a fresh subprocess (so peak memory is its own). An epoch is the trainer's
``train_epoch`` (sampling, every batch's full forward, backward and Adam step); an
evaluation pass is the trainer's validation pass (one forward, full ranking of every
validation user). The median over ``--epochs`` epochs is reported, after one warm-up epoch.
``--random-features`` replaces the dataset's features by seeded random ones of the given
widths (for timing at the paper's dimensions when the real feature files are unavailable).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def random_features(ds, spec: str):
    """``ds`` with its features replaced by seeded uniform random tables, e.g.
    ``image:4096,text:384`` (timing at the paper's widths without the feature files)."""
    from dataclasses import replace

    rng = np.random.default_rng(0)
    feats = {}
    for part in spec.split(","):
        name, dim = part.split(":")
        feats[name] = rng.random((ds.n_items, int(dim)), dtype=np.float32)
    return replace(ds, features=feats)


def mgnm_dir() -> str:
    """Where the measured mgnm package was imported from."""
    import mgnm

    return str(Path(mgnm.__file__).parent)


def measure(args: argparse.Namespace) -> dict:
    import torch

    try:
        from mgnm.config import parse_set, resolve_config
    except ModuleNotFoundError:  # a version with the run config in train/ (bench_goals --compare)
        from mgnm.train.config import parse_set, resolve_config
    from mgnm.data import load_dataset
    from mgnm.train.trainer import Trainer

    ds = load_dataset(args.data)
    if args.random_features:
        ds = random_features(ds, args.random_features)
    base = {"model": args.model, "device": args.device}
    if args.threads:  # the trainer sets its own thread count from the config
        base["threads"] = args.threads
    cfg = resolve_config(base, parse_set(args.set or []))
    trainer = Trainer(cfg, ds)
    if args.steps:
        return measure_steps(args, trainer, ds)
    train_times, eval_times, train_cpu, eval_cpu = [], [], [], []
    for epoch in range(args.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_epoch(epoch)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t1, c1 = time.perf_counter(), time.process_time()
        trainer.evaluate(["valid"])
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t2, c2 = time.perf_counter(), time.process_time()
        if epoch > 0:  # the first epoch warms up allocators and caches
            train_times.append(t1 - t0)
            eval_times.append(t2 - t1)
            train_cpu.append(c1 - c0)
            eval_cpu.append(c2 - c1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = (torch.cuda.max_memory_allocated() / 2**20) if trainer.device.type == "cuda" else None
    return {
        "model": args.model, "data": ds.name, "features": args.random_features or "file",
        "device": str(trainer.device) + (f" ({torch.cuda.get_device_name()})"
                                         if trainer.device.type == "cuda" else ""),
        "threads": trainer.threads, "batches_per_epoch": len(trainer.sampler),
        "epoch_s": statistics.median(train_times), "eval_s": statistics.median(eval_times),
        # CPU seconds of this process (all its threads): on a shared machine, unlike the wall
        # seconds above, they do not grow with the other processes' load
        "epoch_cpu_s": statistics.median(train_cpu), "eval_cpu_s": statistics.median(eval_cpu),
        "peak_rss_mb": round(peak_mb), "peak_gpu_mb": round(gpu_mb) if gpu_mb else None,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "mgnm": mgnm_dir(),
    }


def training_batches(trainer):
    """The trainer's batches epoch after epoch, each epoch opened as the trainer opens it
    (``model.train()``, ``pre_epoch``), for timing single steps. Works with any version of the
    package (``bench_goals --compare`` runs earlier ones), so it uses only long-standing API."""
    for epoch in itertools.count():
        trainer.model.train()
        trainer.model.pre_epoch(epoch)
        yield from trainer.sampler.batches(epoch)


def train_step(trainer, batch) -> None:
    """One optimisation step as the trainer's epoch loop takes it: loss, backward, Adam."""
    losses = trainer.model.loss(batch[0], batch[1], batch[2] if len(batch) > 2 else None)
    trainer.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    trainer.optimizer.step()


def measure_steps(args: argparse.Namespace, trainer, ds) -> dict:
    """Median wall and CPU time of ``--steps`` single training steps after two warm-up steps
    (for graphs too big for whole epochs), an epoch estimated as that times the batches, and
    one evaluation pass unless ``--no-eval``."""
    import torch

    batches = training_batches(trainer)
    walls, cpus = [], []
    with trainer._own_state():
        for step in range(args.steps + 2):
            batch = next(batches)
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(trainer, batch)
            if step >= 2:
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
    eval_s = eval_cpu = None
    if not args.no_eval:
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.evaluate(["valid"])
        eval_s, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    n_batches = len(trainer.sampler)
    step_s, step_cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "model": args.model, "data": ds.name, "features": args.random_features or "file",
        "device": str(trainer.device), "threads": trainer.threads,
        "batches_per_epoch": n_batches, "steps_measured": len(walls),
        "step_ms": 1000 * step_s, "step_cpu_ms": 1000 * step_cpu,
        # an epoch is n_batches steps (sampling excluded): an estimate, not a measurement
        "epoch_s": step_s * n_batches, "epoch_cpu_s": step_cpu * n_batches, "epoch_estimated": True,
        "eval_s": eval_s, "eval_cpu_s": eval_cpu,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_gpu_mb": None, "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "mgnm": mgnm_dir(),
    }


def run_fresh(data, model: str, *, epochs: int, threads: int = 0, device: str = "cpu",
              extra: list[str] | tuple[str, ...] = (), src: str | None = None) -> dict:
    """:func:`measure` in a fresh process (so peak memory is its own), importing mgnm from
    ``src`` when given (another version's ``src`` directory). ``extra``: further arguments of
    this script (``--set``, ``--random-features``, ``--steps``). Raises ``RuntimeError`` with
    the process's last error line when it fails."""
    cmd = [sys.executable, __file__, "--single", "--data", str(data), "--model", model,
           "--epochs", str(epochs), "--device", device, "--threads", str(threads), *extra]
    env = dict(os.environ, PYTHONPATH=str(src)) if src else os.environ
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"{model} on {data}: {tail}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    # a missing or wrong src would silently measure the installed package instead
    if src and not Path(row["mgnm"]).resolve().is_relative_to(Path(src).resolve()):
        raise RuntimeError(f"{src}: mgnm was imported from {row['mgnm']}, not from there")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="a model name, a comma list, or 'all'")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the config's, default 1)")
    p.add_argument("--random-features", help="e.g. image:4096,text:384 (random, seeded)")
    p.add_argument("--steps", type=int, default=0,
                   help="time this many single steps instead of whole epochs")
    p.add_argument("--no-eval", action="store_true", help="with --steps: skip the evaluation")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        print(json.dumps(measure(args)))
        return
    from mgnm.models import MODELS

    models = list(MODELS) if args.model == "all" else args.model.split(",")
    rows = []
    extra = ["--random-features", args.random_features] if args.random_features else []
    if args.steps:
        extra += ["--steps", str(args.steps)] + (["--no-eval"] if args.no_eval else [])
    extra += [a for s in args.set or [] for a in ("--set", s)]
    for m in models:
        try:
            row = run_fresh(args.data, m, epochs=args.epochs, threads=args.threads,
                            device=args.device, extra=extra)
        except RuntimeError as exc:
            print(f"failed: {exc}", file=sys.stderr)
            continue
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json and rows:
        print(f"| model | data | features | device | threads | s/epoch | s/eval | peak RSS MB |"
              f"{' peak GPU MB |' if rows[0]['peak_gpu_mb'] else ''}")
        print("|---" * (8 + bool(rows[0]["peak_gpu_mb"])) + "|")
        if any(r.get("epoch_estimated") for r in rows):
            print("(est.): --steps timed single steps; the epoch is their median times the "
                  "batches per epoch, an estimate, not a measured epoch")
        for r in rows:
            gpu = f" {r['peak_gpu_mb']} |" if r["peak_gpu_mb"] else ""
            print(f"| {r['model']} | {r['data']} | {r['features']} | {r['device']} | "
                  f"{r['threads']} | {r['epoch_s']:.2f}{' (est.)' if r.get('epoch_estimated') else ''} | "
                  f"{'–' if r['eval_s'] is None else format(r['eval_s'], '.2f')} | "
                  f"{r['peak_rss_mb']} |{gpu}")


if __name__ == "__main__":
    main()
