"""Does keeping freed memory mapped (glibc ``mallopt``) help training? Page faults and seconds.

    python benchmarks/bench_allocator.py --data DATA_DIR --model mgnm --epochs 4 --rounds 3

Each round runs the same training twice, each in a fresh process (the allocator's thresholds
are process-wide and cannot be undone cleanly): ``plain`` with glibc's defaults, and
``mallopt`` after raising the mmap threshold to 32 MB, the trim threshold to 256 MB and the
top pad to 64 MB. Per run: minor page faults during the epochs (``getrusage``), and the
median seconds of the epochs after the first. The order of the two alternates by round.
Prints one line per run and the medians per variant; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import subprocess
import sys
import time

CHILD = r"""
import ctypes, json, resource, sys, time
variant, data, model, epochs, threads = sys.argv[1:6]
if variant == "mallopt":
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 256 << 20) and libc.mallopt(-2, 64 << 20)
from mgnm.data import load_dataset
from mgnm.config import resolve_config
from mgnm.train.trainer import Callback, Trainer

times = []
class Clock(Callback):
    def on_epoch(self, record):
        times.append(record.train_seconds + record.eval_seconds)

cfg = resolve_config({"model": model, "epochs": int(epochs), "threads": int(threads),
                      "patience": 1000, "seed": 1})
trainer = Trainer(cfg, load_dataset(data), callbacks=[Clock()])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
trainer.run()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"variant": variant, "faults": faults, "epoch_seconds": times}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="mgnm")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        sys.exit("bench_allocator.py needs Linux with glibc (mallopt)")
    ctypes.CDLL("libc.so.6")  # fail early if it cannot be loaded
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[0]}")
    results: dict[str, list[dict]] = {"plain": [], "mallopt": []}
    for r in range(args.rounds):
        order = ("plain", "mallopt") if r % 2 == 0 else ("mallopt", "plain")
        for variant in order:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, variant, args.data, args.model,
                                  str(args.epochs), str(args.threads)],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["median_epoch_seconds"] = statistics.median(res["epoch_seconds"][1:])
            res["wall"] = time.perf_counter() - t0
            results[variant].append(res)
            print(f"round {r + 1} {variant:8s} minor faults {res['faults']:>9,}  "
                  f"epoch s (median after the first) {res['median_epoch_seconds']:.3f}  "
                  f"epochs {', '.join(f'{t:.3f}' for t in res['epoch_seconds'])}", flush=True)
    print()
    for variant, rs in results.items():
        print(f"{variant:8s} median minor faults {statistics.median(x['faults'] for x in rs):>11,.0f}"
              f"  median epoch s {statistics.median(x['median_epoch_seconds'] for x in rs):.3f}")
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[0]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
