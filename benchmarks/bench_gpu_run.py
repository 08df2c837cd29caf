"""One whole training run to early stopping, timed: seconds per epoch, total seconds, peak memory.

    python benchmarks/bench_gpu_run.py --data ../shared/data/tiktok --device cuda
    python benchmarks/bench_gpu_run.py --data DIR --device cpu --epochs 1      # dry run

What benchmarks/gpu.sh runs after the CUDA-marked tests. The run is the library's own
(``Trainer.run``: train epochs, validation each epoch, test at each improvement, early stopping
with the config's patience); a callback records each epoch's train and evaluation seconds.
Printed: one line per epoch, then the summary lines

    epochs: N (best epoch B, stopped early: yes|no)
    seconds per epoch: mean M (train T + eval E), median D
    total seconds: S (model build and every epoch; data loading L separately)
    peak GPU memory: G MiB (torch.cuda.max_memory_allocated)      [cuda]
    peak RSS: R MiB
    test: recall@20=... ndcg@20=...

and, with ``--json PATH``, the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from mgnm.train.trainer import Callback, EpochRecord


class EpochTimes(Callback):
    def __init__(self) -> None:
        self.records: list[EpochRecord] = []

    def on_epoch(self, record: EpochRecord) -> None:
        self.records.append(record)
        print(f"epoch {record.epoch}: {record.train_seconds + record.eval_seconds:.3f} s "
              f"(train {record.train_seconds:.3f}, eval {record.eval_seconds:.3f})"
              f"{' *' if record.improved else ''}", flush=True)


def run(args: argparse.Namespace) -> dict:
    import torch

    from mgnm.config import load_preset, parse_set, resolve_config
    from mgnm.data import load_dataset
    from mgnm.train.trainer import Trainer

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False "
                 f"(torch {torch.__version__})")
    keys = {"model": args.model, "device": args.device, "seed": args.seed}
    if args.epochs is not None:
        keys["epochs"] = args.epochs
    if args.threads:
        keys["threads"] = args.threads
    config = resolve_config(load_preset(args.preset) if args.preset else {}, keys,
                            parse_set(args.set or []))
    t0 = time.perf_counter()
    dataset = load_dataset(args.data)
    t1 = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = EpochTimes()
    trainer = Trainer(config, dataset, run_dir=args.out, callbacks=[times])
    result = trainer.run()
    if cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    per_epoch = [r.train_seconds + r.eval_seconds for r in times.records]
    return {
        "model": args.model, "data": str(Path(args.data).resolve()), "device": result.device,
        "torch": torch.__version__, "epochs": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "epoch_seconds": per_epoch,
        "seconds_per_epoch": statistics.fmean(per_epoch),
        "median_seconds_per_epoch": statistics.median(per_epoch),
        "train_seconds_per_epoch": statistics.fmean(r.train_seconds for r in times.records),
        "eval_seconds_per_epoch": statistics.fmean(r.eval_seconds for r in times.records),
        "total_seconds": t2 - t1, "load_seconds": t1 - t0,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test": result.test, "valid": result.valid, "run_dir": result.run_dir,
    }


def report(r: dict) -> str:
    lines = [
        f"epochs: {r['epochs']} (best epoch {r['best_epoch']}, "
        f"stopped early: {'yes' if r['stopped_early'] else 'no'})",
        f"seconds per epoch: mean {r['seconds_per_epoch']:.3f} (train "
        f"{r['train_seconds_per_epoch']:.3f} + eval {r['eval_seconds_per_epoch']:.3f}), "
        f"median {r['median_seconds_per_epoch']:.3f}",
        f"total seconds: {r['total_seconds']:.2f} (model build and every epoch; data loading "
        f"{r['load_seconds']:.2f} separately)",
    ]
    if r["peak_gpu_mib"] is not None:
        lines.append(f"peak GPU memory: {r['peak_gpu_mib']:.1f} MiB (torch.cuda.max_memory_allocated)")
    lines.append(f"peak RSS: {r['peak_rss_mib']:.1f} MiB")
    lines.append("test: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(r["test"].items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="mgnm")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the config's, 1000)")
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--preset", help="a shipped preset (default: the model's defaults)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the trainer's)")
    p.add_argument("--out", help="run directory (log.jsonl, result.json); default: none")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    r = run(args)
    print(report(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
