"""Torch threads on a small machine: seconds per epoch with 1 and with all cores' threads,
on an idle machine and beside one other busy training process.

    python benchmarks/bench_threads.py --model mgnm --epochs 6

Each measurement is a fresh ``mgnm train`` subprocess on the bundled demo (``--data`` for
another dataset) with ``--threads N``; the figure is the median of the per-epoch training
seconds in its log.jsonl after the first (warm-up) epoch. "Loaded" starts a second training
(LightGCN on the same data, with as many threads as cores, as a user's other job would) and
measures while it runs. The 1-minute load average before each measurement is printed, so an
"idle" figure taken on a machine that was not idle shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def mgnm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("mgnm")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "mgnm.cli"]


def measure(model: str, data: str | None, threads: int, epochs: int, out: Path) -> float:
    cmd = mgnm_cmd() + ["train", "--model", model, "--threads", str(threads), "-q",
                        "--set", f"epochs={epochs}", "--set", "patience=1000", "--out", str(out)]
    if data:
        cmd += ["--data", data]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return statistics.median(r["train_seconds"] for r in recs[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mgnm")
    ap.add_argument("--data", help="dataset directory (default: the bundled demo)")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("idle", "loaded"):
            load = None
            if condition == "loaded":
                cmd = mgnm_cmd() + ["train", "--model", "lightgcn", "--threads", str(cores),
                                    "-q", "--set", "epochs=100000", "--set", "patience=100000",
                                    "--out", str(Path(tmp) / "load")]
                if args.data:
                    cmd += ["--data", args.data]
                load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                time.sleep(15)  # let it reach its training loop
            try:
                for threads in sorted({1, cores}):
                    la = os.getloadavg()[0]
                    sec = measure(args.model, args.data, threads, args.epochs,
                                  Path(tmp) / f"{condition}-{threads}")
                    rows.append((condition, threads, la, sec))
                    print(f"{condition:6s} threads={threads}  load avg before {la:.2f}  "
                          f"{sec:.3f} s/epoch", flush=True)
            finally:
                if load is not None:
                    load.terminate()
                    load.wait()
    print(f"\n| machine | threads | 1-min load before | s/epoch ({args.model}, median) |")
    print("|---|---|---|---|")
    for condition, threads, la, sec in rows:
        print(f"| {condition} | {threads} | {la:.2f} | {sec:.3f} |")


if __name__ == "__main__":
    main()
