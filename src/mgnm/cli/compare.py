"""``mgnm compare``: paired significance tests between runs (or settings of an experiment)."""

from __future__ import annotations

import json

import click


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def _p(x: float) -> str:
    return f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"


@click.command()
@click.argument("entries", nargs=-1, required=True, type=click.Path())
@click.option("--baseline", type=click.Path(), help="The run or setting every other one is "
              "compared with (default: the first given).")
@click.option("--metric", default="recall@20", show_default=True, help="METRIC@K, one of the "
              "runs' per-user metrics.")
@click.option("--split", default="test", show_default=True, help="Evaluated split (test, valid).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap and randomisation resamples.")
@click.option("--resamples", type=click.IntRange(min=10_000), default=10_000, show_default=True,
              help="Bootstrap and randomisation resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def compare(entries, baseline, metric, split, seed, resamples, as_json) -> None:
    """Paired tests of runs against a baseline over the users both evaluated.

    Each ENTRY is a run directory, a setting directory of an experiment (its seed<N> runs,
    averaged per user) or an experiment directory (each of its settings). Runs need
    per_user.npz (`mgnm evaluate RUN --per-user` writes it). See docs/evaluation.md.
    """
    from mgnm.evaluation.compare import compare as run_compare

    res = run_compare(list(entries), metric=metric, split=split, baseline=baseline, seed=seed,
                      resamples=resamples)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    base_seeds = res["baseline_seeds"]
    base_mean = _fmt(res["baseline_seed_mean"])
    if base_seeds > 1:
        base_mean += f" ± {res['baseline_seed_std']:.4f} ({base_seeds} seeds)"
    table = Table()
    for head in ("run", "mean", "baseline", "diff", "rel.", "95% CI of diff", "p t-test",
                 "p random.", "p Holm", "users"):
        table.add_column(head, justify="left" if head == "run" else "right")
    for r in res["comparisons"]:
        mean = _fmt(r["mean"])
        if r["seeds"] > 1:
            mean += f" ± {r['seed_std']:.4f} ({r['seeds']} seeds)"
        rel = "-" if r["rel_change"] is None else f"{100 * r['rel_change']:+.1f}%"
        lo, hi = r["ci95"]
        table.add_row(r["run"], mean, _fmt(r["baseline_mean"]), f"{r['diff']:+.4f}", rel,
                      f"[{lo:+.4f}, {hi:+.4f}]", _p(r["p_ttest"]), _p(r["p_randomization"]),
                      _p(r["p_holm"]) + (" *" if r["p_holm"] < 0.05 else ""), str(r["users"]))
    console = Console()
    if not console.is_terminal:  # a file or pipe: no wrapping of the paths
        console = Console(width=max(console.width, 200))
    console.print(f"{res['split']} {res['metric']} per user, against {res['baseline']} "
                  f"(mean {base_mean})", markup=False, highlight=False, soft_wrap=True)
    console.print(table)
    n = len(res["comparisons"])
    console.print(f"diff = run - baseline over the users both evaluated; CI: {res['method']} "
                  f"bootstrap, {res['resamples']} resamples, seed {res['seed']}; p: paired "
                  f"t-test, paired randomisation test; Holm: t-test p corrected over the "
                  f"{n} comparison{'s' if n > 1 else ''} (* p < 0.05)",
                  markup=False, highlight=False, soft_wrap=True)
