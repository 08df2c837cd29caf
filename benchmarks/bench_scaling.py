"""Seconds per epoch and peak memory of LightGCN and MGNM on synthetic graphs of 1x, 4x, 16x
Amazon Baby's size, a log-log plot, and the slope of log(time) against log(interactions).

    nice -n 10 python benchmarks/bench_scaling.py --scales 1,4 --epochs 1 \
        --plot scaling.png --json scaling.json

A graph at scale ``s`` has ``s`` times Baby's users, items and interactions. Degrees keep
Baby's distribution: each synthetic user's degree is drawn from Baby's user degree sequence
(``--source``, default ../shared/data/baby/baby.inter, all splits), each item's weight from
its item degree sequence, and every user's items are drawn in proportion to the item weights
(a Chung-Lu graph; repeated pairs are redrawn, items never drawn are dropped). Without the
source file, both sequences follow a discrete power law ``P(d) ∝ d^-2.5``, d >= 5, Baby's
user/item/interaction counts (19445 / 7050 / 160792). Splits per user: max(1, round(0.1 d))
test and as many validation rows, the rest train (users under 3 rows: all train). MGNM gets
seeded random feature files (``--features``, default image:128,text:128).

A size's graph depends only on ``--seed`` and the size. Each (size, model) runs
benchmarks/bench_epoch.py's ``measure`` in a fresh process: the median of ``--epochs``
training epochs after one warm-up epoch, one validation pass per epoch, and the process's
peak RSS. ``--include`` adds the rows of an earlier run's ``--json`` (sizes
measured separately) to the table, the slopes and the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_epoch import run_fresh  # noqa: E402

BABY = HERE.parent.parent / "shared" / "data" / "baby" / "baby.inter"
BABY_COUNTS = (19445, 7050, 160792)  # users, items, interactions of the MMRec Baby file


def degree_sequences(source: Path | None, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """User and item degree sequences of ``source`` (an .inter file), or of the power law."""
    if source is not None and source.is_file():
        rows = np.loadtxt(source, dtype=np.int64, delimiter="\t", skiprows=1, usecols=(0, 1))
        return np.bincount(rows[:, 0]), np.bincount(rows[:, 1]), str(source)
    n_u, n_i, n_e = BABY_COUNTS

    def power_law(n: int, mean: float) -> np.ndarray:
        d = np.arange(5, 2000)
        p = d ** -2.5
        seq = rng.choice(d, size=n, p=p / p.sum())
        return np.maximum(5, np.round(seq * mean / seq.mean())).astype(np.int64)

    return power_law(n_u, n_e / n_u), power_law(n_i, n_e / n_i), "power law d^-2.5 (d >= 5)"


def synthetic_graph(user_deg: np.ndarray, item_deg: np.ndarray, scale: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(users, items, n_users, n_items)``: distinct pairs of a Chung-Lu graph with ``scale``
    times as many users and items, degrees resampled from the two sequences."""
    n_u = scale * user_deg.size
    n_i = scale * item_deg.size
    deg = rng.choice(user_deg[user_deg > 0], size=n_u)
    cdf = np.cumsum(rng.choice(item_deg[item_deg > 0], size=n_i).astype(np.float64))
    cdf /= cdf[-1]

    def draw(n: int) -> np.ndarray:  # items with probability proportional to their weight
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), n_i - 1)

    users = np.repeat(np.arange(n_u), deg)
    items = draw(users.size)
    for _ in range(20):  # redraw the repeated (user, item) pairs
        _, first = np.unique(users * n_i + items, return_index=True)
        repeated = np.ones(users.size, dtype=bool)
        repeated[first] = False
        dup = np.flatnonzero(repeated)
        if dup.size == 0:
            break
        items[dup] = draw(dup.size)
    keep = np.unique(users * n_i + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    used, items = np.unique(items, return_inverse=True)  # drop items never drawn
    return users, items, n_u, used.size


def split_labels(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x_label per row: per user max(1, round(0.1 d)) test rows, as many validation rows."""
    order = rng.permutation(users.size)
    order = order[np.argsort(users[order], kind="stable")]
    deg = np.bincount(users)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - start[users[order]]
    n_test = np.maximum(1, np.round(0.1 * deg)).astype(np.int64)
    small = deg[users] < 3
    labels = np.where(rank < n_test[users], 2, np.where(rank < 2 * n_test[users], 1, 0))
    return np.where(small, 0, labels)


def write_graph(root: Path, name: str, users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                n_items: int, features: dict[str, int], rng: np.random.Generator) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.inter", "w") as f:
        f.write("userID\titemID\tx_label\n")
        np.savetxt(f, np.stack([users, items, labels], 1), fmt="%d", delimiter="\t")
    for m, dim in features.items():
        np.save(d / f"{m}_feat.npy", rng.random((n_items, dim), dtype=np.float32))
    return d


def measure(data: Path, models: list[str], epochs: int, steps: int = 0,
            no_eval: bool = False) -> list[dict]:
    """bench_epoch.py for ``models`` on ``data`` (one fresh process per model, one thread);
    with ``steps``, single steps are timed and an epoch is estimated from them."""
    extra = ["--steps", str(steps)] + (["--no-eval"] if no_eval else []) if steps else []
    rows = []
    for model in models:
        try:
            rows.append(run_fresh(data, model, epochs=epochs, threads=1, extra=extra))
        except RuntimeError as exc:
            print(f"failed: {exc}", file=sys.stderr)
    return rows


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def cpu(row: dict, key: str, digits: int = 2) -> str:
    return f"{row[key]:.{digits}f}" if row.get(key) is not None else "–"


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("error: the plot needs matplotlib: pip install 'mgnm[plot]'")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, keys, label in ((axes[0], ("epoch_s", "epoch_cpu_s"), "seconds per training epoch"),
                            (axes[1], ("step_cpu_ms",), "CPU ms per training step (batch)"),
                            (axes[2], ("peak_rss_mb",), "peak RSS (MB)")):
        for model, key in ((m, k) for m in sorted({r["model"] for r in rows}) for k in keys):
            pts = sorted((r["interactions"], r[key]) for r in rows
                         if r["model"] == model and r.get(key) is not None)
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            s = f", slope {slope(list(x), list(y)):.2f}" if len(x) > 1 else ""
            what = {"epoch_s": " wall", "epoch_cpu_s": " CPU"}.get(key, "")
            ax.loglog(x, y, "o-" if key != "epoch_cpu_s" else "s--", label=f"{model}{what}{s}")
            ref = np.array([x[0], x[-1]], dtype=float)
            ax.loglog(ref, y[0] * ref / ref[0], ":", color="grey", lw=1)
        ax.set_xlabel("interactions (all splits)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    sizes = ", ".join(f"{s}x" for s in sorted({r["scale"] for r in rows}))
    fig.suptitle(f"Synthetic graphs at {sizes} Baby's size (dotted: linear growth)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scales", default="1,4,16")
    p.add_argument("--models", default="lightgcn,mgnm")
    p.add_argument("--epochs", type=int, default=2, help="measured epochs after one warm-up")
    p.add_argument("--features", default="image:128,text:128")
    p.add_argument("--source", type=Path, default=BABY)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=0,
                   help="time this many single training steps per size instead of epochs "
                        "(epochs are then estimated as steps x batches)")
    p.add_argument("--no-eval", action="store_true", help="with --steps: no evaluation pass")
    p.add_argument("--plot", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--include", type=Path, action="append", default=[],
                   help="rows of an earlier run (its --json) to tabulate and plot with these")
    args = p.parse_args()
    feats = {m: int(d) for m, d in (x.split(":") for x in args.features.split(","))}
    user_deg, item_deg, source = degree_sequences(args.source, np.random.default_rng(args.seed))
    print(f"degrees from {source}: {user_deg.size} users, {item_deg.size} items, "
          f"{int(user_deg.sum())} interactions", flush=True)
    rows = [r for path in args.include for r in json.loads(path.read_text())["rows"]]
    with tempfile.TemporaryDirectory(prefix="mgnm-scaling-") as tmp:
        for scale in (int(s) for s in args.scales.split(",") if s):
            rng = np.random.default_rng(1000 * args.seed + scale - 1)  # per size, same in any run
            users, items, n_u, n_i = synthetic_graph(user_deg, item_deg, scale, rng)
            labels = split_labels(users, rng)
            data = write_graph(Path(tmp), f"synth{scale}x", users, items, labels, n_i, feats, rng)
            size = {"scale": scale, "users": n_u, "items": n_i, "interactions": int(users.size),
                    "train": int((labels == 0).sum())}
            print(f"{scale}x: {size}", flush=True)
            for r in measure(data, args.models.split(","), args.epochs, args.steps,
                             args.no_eval):
                rows.append({**size, **r})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| size | users | items | interactions | model | s/epoch (wall) | CPU s/epoch | s/eval "
          "(wall) | CPU s/eval | batches | CPU ms/step | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows.sort(key=lambda r: (r["scale"], r["model"]))
    for r in rows:  # one training step (batch) propagates the whole graph: per step, not per
        if "epoch_cpu_s" in r and "step_cpu_ms" not in r:  # epoch, can grow linearly
            r["step_cpu_ms"] = 1000 * r["epoch_cpu_s"] / r["batches_per_epoch"]
    for r in rows:
        print(f"| {r['scale']}x | {r['users']} | {r['items']} | {r['interactions']} | {r['model']} "
              f"| {r['epoch_s']:.2f}{' (est.)' if r.get('epoch_estimated') else ''} | "
              f"{cpu(r, 'epoch_cpu_s')} | {cpu(r, 'eval_s')} | "
              f"{cpu(r, 'eval_cpu_s')} | {r['batches_per_epoch']} | {cpu(r, 'step_cpu_ms', 1)} | "
              f"{r['peak_rss_mb']} |")
    slopes = {}
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        if len(mine) > 1:
            x = [r["interactions"] for r in mine]
            keys = ["epoch_s", "epoch_cpu_s", "step_cpu_ms", "eval_s", "eval_cpu_s", "peak_rss_mb"]
            slopes[model] = {k: slope(x, [r[k] for r in mine]) for k in keys
                             if all(r.get(k) is not None for r in mine)}
            print(f"{model}: slope against log(interactions): " + ", ".join(
                f"{k} {v:.2f}" for k, v in slopes[model].items()))
    if args.plot and rows:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "source": source,
                                         "features": args.features,
                                         "epochs": args.epochs, "rows": rows,
                                         "slopes": slopes}, indent=1) + "\n")


if __name__ == "__main__":
    main()
