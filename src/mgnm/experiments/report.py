"""Result tables (Markdown, CSV, JSON) and plots from finished runs."""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mgnm.experiments.grid import RunOutcome, Selection, aggregate, select_best
from mgnm.train import io

DEFAULT_METRICS = tuple(f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20, 50))


def fmt(mean_std: tuple[float, float], n: int) -> str:
    mean, std = mean_std
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def best_per_model(outcomes: Sequence[RunOutcome], metric: str) -> list[Selection]:
    """One row per model: its grid point with the best mean validation metric."""
    by_model: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        by_model.setdefault(o.spec.config["model"], []).append(o)
    rows = []
    for model, group in by_model.items():
        candidates = aggregate(group, metric)
        if candidates:
            best = select_best(candidates, metric)
            best.label = model
            rows.append(best)
    return rows


def available(rows: Sequence[Selection], metrics: Sequence[str]) -> list[str]:
    """The requested metrics that every row has (runs may use other cut-offs)."""
    return [m for m in metrics if all(m in r.test for r in rows)]


def markdown(rows: Sequence[Selection], metrics: Sequence[str] = DEFAULT_METRICS,
             transpose: bool = False, split: str = "test") -> str:
    """Rows = settings, columns = metrics (``transpose``: rows = metrics, as Table I)."""
    if not rows:
        return "(no finished runs)\n"
    metrics = available(rows, metrics)
    if transpose:
        head = "| metric | " + " | ".join(r.label for r in rows) + " |"
        sep = "|---" * (len(rows) + 1) + "|"
        body = [f"| {m} | " + " | ".join(fmt(getattr(r, split)[m], len(r.seeds)) for r in rows)
                + " |" for m in metrics]
        extra = ["| s/epoch | " + " | ".join(f"{r.seconds_per_epoch:.2f}" for r in rows) + " |"]
        return "\n".join([head, sep, *body, *extra]) + "\n"
    head = "| setting | " + " | ".join(metrics) + " | valid recall@20 | s/epoch | seeds |"
    sep = "|---" * (len(metrics) + 4) + "|"
    body = []
    for r in rows:
        cells = [fmt(getattr(r, split)[m], len(r.seeds)) for m in metrics]
        body.append(f"| {r.label} | " + " | ".join(cells)
                    + f" | {fmt(r.valid['recall@20'], len(r.seeds))} | {r.seconds_per_epoch:.2f}"
                    + f" | {len(r.seeds)} |")
    return "\n".join([head, sep, *body]) + "\n"


def write_summary(out: Path, title: str, rows: Sequence[Selection],
                  outcomes: Sequence[RunOutcome], transpose: bool = False,
                  metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in ``out``; returns the Markdown."""
    failed = [o for o in outcomes if o.error]
    text = f"# {title}\n\nTest metrics (mean ± std over seeds) of the setting selected on " \
           f"validation Recall@20.\n\n" + markdown(rows, metrics, transpose)
    if failed:
        text += "\nFailed runs:\n" + "".join(f"- {o.spec.run_dir}: {o.error}\n" for o in failed)
    io.atomic_write_text(out / "summary.md", text)
    metrics = available(rows, metrics)
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["setting", "seeds", "seconds_per_epoch"]
               + [f"test_{m}_{s}" for m in metrics for s in ("mean", "std")]
               + [f"valid_{m}_{s}" for m in metrics for s in ("mean", "std")])
    for r in rows:
        w.writerow([r.label, " ".join(map(str, r.seeds)), f"{r.seconds_per_epoch:.4f}"]
                   + [f"{x:.6f}" for m in metrics for x in r.test[m]]
                   + [f"{x:.6f}" for m in metrics for x in r.valid[m]])
    io.atomic_write_text(out / "summary.csv", buf.getvalue())
    io.write_json(out / "summary.json", {"title": title, "rows": [_row_json(r) for r in rows],
                                         "failed": [str(o.spec.run_dir) for o in failed]})
    return text


def _row_json(r: Selection) -> dict[str, Any]:
    d = asdict(r)
    d.pop("per_seed")
    return d


def plot_curves(run_dirs: Sequence[Path], out: Path, metric: str = "recall@20") -> Path:
    """Validation ``metric`` and training loss per epoch of one or more runs, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from mgnm.errors import MgnmError

        raise MgnmError("plotting needs matplotlib: pip install 'mgnm[plot]'") from exc
    import json

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for d in run_dirs:
        log = Path(d) / "log.jsonl"
        if not log.is_file():
            from mgnm.errors import CheckpointError

            raise CheckpointError(f"{log}: missing (is {d} a run directory?)")
        recs = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        epochs = [r["epoch"] for r in recs]
        ax1.plot(epochs, [r["valid"][metric] for r in recs], label=Path(d).name)
        ax2.plot(epochs, [r["losses"]["loss"] for r in recs], label=Path(d).name)
    ax1.set(xlabel="epoch", ylabel=f"validation {metric}")
    ax2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_sensitivity(rows: Sequence[Selection], out: Path, metric: str = "recall@20") -> Path:
    """Test ``metric`` against beta and against delta (Tables IV-VI as a figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, other in ((axes[0], "ddr_weight", "beta"), (axes[1], "ddr_mm_weight", "delta")):
        pts = sorted({r.settings[key]: r for r in rows if r.label.startswith(other)}.items())
        if pts:
            xs = [p[0] for p in pts]
            ys = [p[1].test[metric][0] for p in pts]
            es = [p[1].test[metric][1] for p in pts]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3)
            ax.set(xscale="log", xlabel=other, ylabel=f"test {metric}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
