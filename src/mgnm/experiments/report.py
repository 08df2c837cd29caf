"""Result tables (Markdown, CSV, JSON) and plots from finished runs."""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mgnm import storage
from mgnm.experiments.grid import RunOutcome, Selection, aggregate, select_best
from mgnm.plots import figure, save_figure

#: The metric families a table shows, at every cut-off the runs' ``topk`` has.
TABLE_FAMILIES = ("recall", "ndcg")


def fmt(mean_std: tuple[float, float], n: int) -> str:
    mean, std = mean_std
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def best_per_model(outcomes: Sequence[RunOutcome]) -> list[Selection]:
    """One row per model: its grid point with the best mean validation metric."""
    by_model: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        by_model.setdefault(o.spec.config["model"], []).append(o)
    rows = []
    for model, group in by_model.items():
        candidates = aggregate(group)
        if candidates:
            best = select_best(candidates)
            best.label = model
            rows.append(best)
    return rows


def table_metrics(rows: Sequence[Selection]) -> list[str]:
    """The metrics every row has, family by family (recall, ndcg), by cut-off: whatever
    ``topk`` the runs used."""
    if not rows:
        return []
    common = set.intersection(*(set(r.test) for r in rows))
    out = []
    for fam in TABLE_FAMILIES:
        ks = sorted(int(m.split("@")[1]) for m in common if m.split("@")[0] == fam)
        out += [f"{fam}@{k}" for k in ks]
    return out


def _shown(rows: Sequence[Selection], metrics: Sequence[str] | None) -> list[str]:
    """``metrics`` (default: :func:`table_metrics`) that every row has."""
    if metrics is None:
        return table_metrics(rows)
    return [m for m in metrics if all(m in r.test for r in rows)]


def _selection_header(rows: Sequence[Selection]) -> str:
    metrics = sorted({r.metric for r in rows})
    return f"valid {metrics[0]}" if len(metrics) == 1 else "valid (selection metric)"


def _selection_cell(r: Selection, uniform: bool) -> str:
    cell = fmt(r.valid[r.metric], len(r.seeds))
    return cell if uniform else f"{cell} ({r.metric})"


def markdown(rows: Sequence[Selection], metrics: Sequence[str] | None = None,
             transpose: bool = False, split: str = "test") -> str:
    """Rows = settings, columns = metrics (``transpose``: rows = metrics, as Table I); one
    more column (row) gives the validation metric each setting was selected on."""
    if not rows:
        return "(no finished runs)\n"
    metrics = _shown(rows, metrics)
    uniform = len({r.metric for r in rows}) == 1
    sel_head = _selection_header(rows)
    if transpose:
        head = "| metric | " + " | ".join(r.label for r in rows) + " |"
        sep = "|---" * (len(rows) + 1) + "|"
        body = [f"| {m} | " + " | ".join(fmt(getattr(r, split)[m], len(r.seeds)) for r in rows)
                + " |" for m in metrics]
        extra = [f"| {sel_head} | " + " | ".join(_selection_cell(r, uniform) for r in rows)
                 + " |",
                 "| s/epoch | " + " | ".join(f"{r.seconds_per_epoch:.2f}" for r in rows) + " |"]
        return "\n".join([head, sep, *body, *extra]) + "\n"
    head = "| setting | " + " | ".join(metrics) + f" | {sel_head} | s/epoch | seeds |"
    sep = "|---" * (len(metrics) + 4) + "|"
    body = []
    for r in rows:
        cells = [fmt(getattr(r, split)[m], len(r.seeds)) for m in metrics]
        body.append(f"| {r.label} | " + " | ".join(cells)
                    + f" | {_selection_cell(r, uniform)} | {r.seconds_per_epoch:.2f}"
                    + f" | {len(r.seeds)} |")
    return "\n".join([head, sep, *body]) + "\n"


def write_summary(out: Path, title: str, rows: Sequence[Selection],
                  outcomes: Sequence[RunOutcome], transpose: bool = False,
                  metrics: Sequence[str] | None = None) -> str:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in ``out``; returns the Markdown."""
    failed = [o for o in outcomes if o.error]
    chosen_on = " ".join(["validation", *sorted({r.metric for r in rows})])
    text = f"# {title}\n\nTest metrics (mean ± std over seeds) of the setting selected on " \
           f"{chosen_on}.\n\n" + markdown(rows, metrics, transpose)
    if failed:
        text += "\nFailed runs:\n" + "".join(f"- {o.spec.run_dir}: {o.error}\n" for o in failed)
    storage.atomic_write_text(out / "summary.md", text)
    metrics = _shown(rows, metrics)
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["setting", "seeds", "seconds_per_epoch"]
               + [f"test_{m}_{s}" for m in metrics for s in ("mean", "std")]
               + [f"valid_{m}_{s}" for m in metrics for s in ("mean", "std")])
    for r in rows:
        w.writerow([r.label, " ".join(map(str, r.seeds)), f"{r.seconds_per_epoch:.4f}"]
                   + [f"{x:.6f}" for m in metrics for x in r.test[m]]
                   + [f"{x:.6f}" for m in metrics for x in r.valid[m]])
    storage.atomic_write_text(out / "summary.csv", buf.getvalue())
    storage.write_json(out / "summary.json", {
        "title": title, "rows": [_row_json(r) for r in rows],
        "failed": [{"run_dir": str(o.spec.run_dir), "error": o.error} for o in failed],
        "reused": sum(o.reused for o in outcomes), "runs": len(outcomes)})
    return text


def _row_json(r: Selection) -> dict[str, Any]:
    d = asdict(r)
    d.pop("per_seed")
    return d


def plot_sensitivity(rows: Sequence[Selection], out: Path, metric: str | None = None) -> Path:
    """Test ``metric`` (default: the rows' selection metric) against beta and against delta
    (Tables IV-VI as a figure)."""
    metric = metric or (rows[0].metric if rows else "recall@20")
    fig = figure(9, 3.5)
    axes = fig.subplots(1, 2)
    for ax, key, other in ((axes[0], "ddr_weight", "beta"), (axes[1], "ddr_mm_weight", "delta")):
        pts = sorted({r.settings[key]: r for r in rows if r.label.startswith(other)}.items())
        if pts:
            xs = [p[0] for p in pts]
            ys = [p[1].test[metric][0] for p in pts]
            es = [p[1].test[metric][1] for p in pts]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3)
            ax.set(xscale="log", xlabel=other, ylabel=f"test {metric}")
    fig.tight_layout()
    return save_figure(fig, out)
