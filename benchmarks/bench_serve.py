"""Load test of ``mgnm serve`` on loopback: 8 concurrent clients, bounded in time.

    python benchmarks/bench_serve.py RUN_DIR [--seconds 25] [--clients 8]

Starts the real server (``mgnm serve``) on a free loopback port, then runs two phases of
``--seconds`` each: known users (``GET /users/{id}/recommendations?k=20``, users drawn at
random among those with a training interaction) and fold-in (``POST /recommendations`` with
the training items of a random user as the history, k = 20). Prints requests/s, p50/p99
latency, the count of non-200 answers, the server process's CPU time per request (its user +
system CPU time from ``/proc/PID/stat`` before and after each phase, divided by the requests
answered) and its resident memory before and after.
Everything stays on 127.0.0.1; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from mgnm import api


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, from field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def phase(base: str, make_request, clients: int, seconds: float, pid: int) -> dict:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.monotonic() < stop_at:
                method, path, kw = make_request(rng)
                t0 = time.perf_counter()
                try:
                    ok = c.request(method, path, **kw).status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:  # a failed request counts as an error, not as a latency
                    if ok:
                        lat.append(dt)
                    errors[0] += not ok

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    ms = np.array(lat) * 1000
    answered = len(lat) + errors[0]
    return {"requests": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": errors[0],
            "cpu_ms": 1000 * cpu / max(answered, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=25.0, help="per phase (two phases)")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    run = api.load_run(args.run)
    ds = run.dataset
    trained = np.unique(ds.train.users)
    # requests speak the dataset's original IDs where it has ID maps (indices otherwise)
    user_id = (lambda u: ds.user_map.original[u]) if ds.user_map else int
    item_ids = (lambda items: list(ds.item_map.original_of(items))) if ds.item_map else \
        (lambda items: [int(i) for i in items])
    picked = np.random.default_rng(0).choice(trained, min(500, trained.size), replace=False)
    histories = {int(u): item_ids(ds.train.items[ds.train.users == u]) for u in picked}
    del run

    port = free_port()
    exe = Path(sys.executable).with_name("mgnm")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mgnm.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["serve", args.run, "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 600:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        load_s = time.monotonic() - t0
        before = rss_mb(proc.pid)
        users = [user_id(int(u)) for u in trained]
        hist_list = list(histories.values())
        known = phase(base, lambda r: ("GET", f"/users/{r.choice(users)}/recommendations",
                                       {"params": {"k": 20}}), args.clients, args.seconds, proc.pid)
        fold = phase(base, lambda r: ("POST", "/recommendations",
                                      {"json": {"history": r.choice(hist_list), "k": 20}}),
                     args.clients, args.seconds, proc.pid)
        after = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"server: {args.run}, started and loaded in {load_s:.1f} s; {args.clients} clients, "
          f"{args.seconds:.0f} s per phase")
    print("| request | requests | req/s | p50 ms | p99 ms | server CPU ms/request | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in (("GET /users/{id}/recommendations?k=20", known),
                    ("POST /recommendations (fold-in), k=20", fold)):
        print(f"| {name} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['cpu_ms']:.3f} | {r['errors']} |")
    print(f"server RSS: {before:.0f} MB before, {after:.0f} MB after")


if __name__ == "__main__":
    main()
