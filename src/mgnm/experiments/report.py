"""Result tables (Markdown, CSV, JSON) and plots from finished runs."""

from __future__ import annotations

import csv
import io as _io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mgnm import storage
from mgnm.errors import MgnmError
from mgnm.evaluation.peruser import PER_USER_FILE
from mgnm.experiments.grid import RunOutcome, Selection, aggregate, select_best
from mgnm.plots import figure, save_figure

#: The metric families a table shows, at every cut-off the runs' ``topk`` has.
TABLE_FAMILIES = ("recall", "ndcg")


#: appended to a cell that differs significantly from the best of its metric
MARK = " †"


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


def _group_key(r: Selection) -> str:
    """A setting's key in :func:`significance`: its directory (unique in an experiment)."""
    return str(Path(r.run_dirs[0]).parent) if r.run_dirs else r.name


def significance(rows: Sequence[Selection], metrics: Sequence[str] | None = None,
                 split: str = "test") -> tuple[dict[str, dict[str, bool]] | None, str]:
    """Significance marks of a table (:func:`mgnm.evaluation.compare.significance_marks`:
    per metric, the settings whose Holm-corrected paired t-test against the best setting
    has p < 0.05) and the line that explains them under the table. Marks are ``None`` (and
    the line says why) when a run has no per-user results or they cannot be compared."""
    if len(rows) < 2:
        return None, ""
    metrics = _shown(rows, metrics)
    dirs = [Path(d) for r in rows for d in r.run_dirs]
    missing = [d for d in dirs if not (d / PER_USER_FILE).is_file()]
    if missing or not dirs:
        return None, (f"No significance marks: they need per-user results ({PER_USER_FILE}) of "
                      f"every run; {len(missing)} of {len(dirs)} runs have none (`mgnm "
                      f"evaluate RUN --per-user` writes them, e.g. for {missing[0] if missing else '-'}).")
    from mgnm.evaluation.compare import significance_marks

    try:
        marks = significance_marks({_group_key(r): r.run_dirs for r in rows}, metrics, split)
    except MgnmError as exc:
        return None, f"No significance marks: {str(exc).splitlines()[0]}"
    return marks, (f"{MARK.strip()} differs from the best setting of that metric (highest "
                   f"mean) with a Holm-corrected paired t-test p < 0.05 over the {split} users "
                   f"(per-user results, seeds averaged per user; Holm over each metric's "
                   f"comparisons; `mgnm compare` gives every p and interval).")


def _cell(r: Selection, m: str, split: str, marks: dict[str, dict[str, bool]] | None) -> str:
    cell = fmt(getattr(r, split)[m], len(r.seeds))
    return cell + MARK if marks and marks.get(m, {}).get(_group_key(r)) else cell


def markdown(rows: Sequence[Selection], metrics: Sequence[str] | None = None,
             transpose: bool = False, split: str = "test",
             marks: dict[str, dict[str, bool]] | None = None) -> str:
    """Rows = settings, columns = metrics (``transpose``: rows = metrics, as Table I); one
    more column (row) gives the validation metric each setting was selected on. ``marks``
    (from :func:`significance`) adds a dagger to the cells that differ from the best."""
    if not rows:
        return "(no finished runs)\n"
    metrics = _shown(rows, metrics)
    uniform = len({r.metric for r in rows}) == 1
    sel_head = _selection_header(rows)
    if transpose:
        head = "| metric | " + " | ".join(r.label for r in rows) + " |"
        sep = "|---" * (len(rows) + 1) + "|"
        body = [f"| {m} | " + " | ".join(_cell(r, m, split, marks) for r in rows)
                + " |" for m in metrics]
        extra = [f"| {sel_head} | " + " | ".join(_selection_cell(r, uniform) for r in rows)
                 + " |",
                 "| s/epoch | " + " | ".join(f"{r.seconds_per_epoch:.2f}" for r in rows) + " |"]
        return "\n".join([head, sep, *body, *extra]) + "\n"
    head = "| setting | " + " | ".join(metrics) + f" | {sel_head} | s/epoch | seeds |"
    sep = "|---" * (len(metrics) + 4) + "|"
    body = []
    for r in rows:
        cells = [_cell(r, m, split, marks) for m in metrics]
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
    marks, note = significance(rows, metrics)
    text = f"# {title}\n\nTest metrics (mean ± std over seeds) of the setting selected on " \
           f"{chosen_on}.\n\n" + markdown(rows, metrics, transpose, marks=marks)
    if note:
        text += f"\n{note}\n"
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
        "significance": {"marks": marks and {m: {_label(rows, k): v for k, v in col.items()}
                                             for m, col in marks.items()}, "note": note},
        "failed": [{"run_dir": str(o.spec.run_dir), "error": o.error} for o in failed],
        "reused": sum(o.reused for o in outcomes), "runs": len(outcomes)})
    return text


def _label(rows: Sequence[Selection], key: str) -> str:
    return next((r.label for r in rows if _group_key(r) == key), key)


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
