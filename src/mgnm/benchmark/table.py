"""The benchmark's table in Markdown, CSV, LaTeX or JSON.

One row per model, one column per metric: the test mean ± std over the seed runs of the
model's chosen configuration. The best mean of each column is bold; a cell marked † differs
from its column's best (paired t-test over users, Holm-corrected, p < 0.05). Beside it, per
model: the chosen configuration, the trials run and pruned, and the compute time.
"""

from __future__ import annotations

import csv
import io as _io
import json
from typing import Any

from mgnm import storage
from mgnm.benchmark.run import BenchmarkResult, ModelOutcome, shown_metrics
from mgnm.errors import ConfigError
from mgnm.experiments.report import fmt

FORMATS = ("md", "csv", "latex", "json")
SUFFIX = {"md": "md", "csv": "csv", "latex": "tex", "json": "json"}
MARK = "†"


def best_models(result: BenchmarkResult, metric: str) -> set[str]:
    """The models with the highest test mean of ``metric`` (all of them on a tie)."""
    means = {m.model: m.row.test[metric][0] for m in result.models if m.row is not None}
    top = max(means.values())
    return {k for k, v in means.items() if v == top}


def _marked(result: BenchmarkResult, metric: str, model: str) -> bool:
    return bool(result.marks and result.marks.get(metric, {}).get(model, False))


def _config_text(m: ModelOutcome) -> str:
    if m.chosen is None:
        return "(no trial completed)"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in m.chosen.items())


def _trials_text(m: ModelOutcome) -> str:
    t = m.trials
    return f"{t['complete'] + t['pruned'] + t['failed']} ({t['pruned']} pruned, {t['failed']} failed)"


def _legend(result: BenchmarkResult) -> str:
    if result.marks is not None:
        return (f"Bold: the best mean of the column. {MARK}: differs from the column's best "
                f"(paired t-test over test users, Holm-corrected over the models, p < 0.05).")
    return f"Bold: the best mean of the column. No significance marks ({result.significance_note})."


def markdown(result: BenchmarkResult) -> str:
    metrics = shown_metrics(result)
    n = len(result.budget.seeds)
    lines = [f"# Benchmark on {result.data}", "", result.budget.text(result.metric), "",
             _legend(result), "",
             "| model | " + " | ".join(f"test {m}" for m in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    best = {m: best_models(result, m) for m in metrics}
    for mo in result.models:
        if mo.row is None:
            lines.append(f"| {mo.model} | " + " | ".join("—" for _ in metrics) + " |")
            continue
        cells = []
        for m in metrics:
            cell = fmt(mo.row.test[m], n)
            cell = f"**{cell}**" if mo.model in best[m] else cell
            cells.append(cell + (MARK if _marked(result, m, mo.model) else ""))
        lines.append(f"| {mo.model} | " + " | ".join(cells) + " |")
    lines += ["", f"| model | chosen configuration | valid {result.metric} of the chosen "
                  f"trial | trials run | compute time (s) |", "|---|---|---|---|---|"]
    for mo in result.models:
        valid = "—" if mo.best_valid is None else f"{mo.best_valid:.4f} (#{mo.best_trial})"
        lines.append(f"| {mo.model} | {_config_text(mo)} | {valid} | {_trials_text(mo)} | "
                     f"{mo.compute_seconds:.0f} |")
    lines += ["", "Compute time: the training and evaluation time of every epoch of the "
                  "model's trials and seed runs, as their logs record it.", ""]
    failed = [(mo.model, o) for mo in result.models for o in mo.failed]
    if failed:
        lines += ["Failed runs:", *(f"- {m}: {o.spec.run_dir}: {o.error}" for m, o in failed), ""]
    return "\n".join(lines)


def csv_text(result: BenchmarkResult) -> str:
    metrics = shown_metrics(result)
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", *[f"test_{m}_{s}" for m in metrics for s in ("mean", "std", "best",
                                                                         "differs")],
                "chosen", "best_trial", f"valid_{result.metric}", "trials", "pruned", "failed",
                "compute_seconds"])
    for mo in result.models:
        cells: list[Any] = []
        for m in metrics:
            if mo.row is None:
                cells += ["", "", "", ""]
                continue
            mean, std = mo.row.test[m]
            differs = "" if result.marks is None else int(_marked(result, m, mo.model))
            cells += [f"{mean:.6f}", f"{std:.6f}", int(mo.model in best_models(result, m)),
                      differs]
        t = mo.trials
        w.writerow([mo.model, *cells, json.dumps(mo.chosen, sort_keys=True),
                    "" if mo.best_trial is None else mo.best_trial,
                    "" if mo.best_valid is None else f"{mo.best_valid:.6f}",
                    t["complete"] + t["pruned"] + t["failed"], t["pruned"], t["failed"],
                    f"{mo.compute_seconds:.1f}"])
    return buf.getvalue()


def _tex(s: str) -> str:
    return s.replace("_", r"\_").replace("@", "@").replace("%", r"\%")


def latex(result: BenchmarkResult) -> str:
    metrics = shown_metrics(result)
    n = len(result.budget.seeds)
    lines = [r"\begin{tabular}{l" + "r" * len(metrics) + "}", r"\toprule",
             "model & " + " & ".join(_tex(m) for m in metrics) + r" \\", r"\midrule"]
    best = {m: best_models(result, m) for m in metrics}
    for mo in result.models:
        cells = []
        for m in metrics:
            if mo.row is None:
                cells.append("--")
                continue
            cell = fmt(mo.row.test[m], n).replace("±", r"$\pm$")
            cell = rf"\textbf{{{cell}}}" if mo.model in best[m] else cell
            cells.append(cell + (r"$^\dagger$" if _marked(result, m, mo.model) else ""))
        lines.append(_tex(mo.model) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def as_json(result: BenchmarkResult) -> dict[str, Any]:
    metrics = shown_metrics(result)
    return {
        "data": result.data, "budget": result.budget_json(), "metrics": metrics,
        "significance": result.marks, "significance_note": result.significance_note,
        "wall_seconds_this_call": result.wall_seconds,
        "models": [{
            "model": mo.model, "chosen": mo.chosen, "best_trial": mo.best_trial,
            "best_valid": mo.best_valid, "trials": mo.trials, "study": mo.study,
            "compute_seconds": mo.compute_seconds,
            "seeds": [] if mo.row is None else mo.row.seeds,
            "run_dirs": [str(d) for d in mo.run_dirs],
            "test": None if mo.row is None else {m: list(mo.row.test[m]) for m in metrics},
            "valid": None if mo.row is None else {m: list(mo.row.valid[m]) for m in metrics},
            "best": [m for m in metrics if mo.row is not None and mo.model in
                     best_models(result, m)],
            "failed": [{"run_dir": str(o.spec.run_dir), "error": o.error} for o in mo.failed],
        } for mo in result.models]}


def render(result: BenchmarkResult, form: str) -> str:
    if form == "md":
        return markdown(result)
    if form == "csv":
        return csv_text(result)
    if form == "latex":
        return latex(result)
    if form == "json":
        return json.dumps(as_json(result), indent=2) + "\n"
    raise ConfigError(f"unknown format {form!r}; formats: {', '.join(FORMATS)}")


def write_all(result: BenchmarkResult) -> None:
    """``benchmark.md``, ``.csv``, ``.tex`` and ``.json`` in the benchmark directory."""
    for form in FORMATS:
        storage.atomic_write_text(result.out / f"benchmark.{SUFFIX[form]}", render(result, form))
