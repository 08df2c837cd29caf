"""Pieces every command family shares: the metrics table, seed lists, the Ray options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

TOPK_SHOWN = ("recall", "ndcg")


def metrics_table(title: str, rows: dict[str, dict[str, float]], ks,
                  names: list[str] | None = None) -> None:
    """One row per metric (``names``, default recall and ndcg at every K), one column per
    split."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    for split in rows:
        table.add_column(split, justify="right")
    if names is None:
        names = [f"{m}@{k}" for m in TOPK_SHOWN for k in ks]
    for name in names:
        table.add_row(name, *(f"{r.get(name, float('nan')):.4f}" for r in rows.values()))
    console = Console()
    # the title on its own line: as the table's title it wrapped to the narrow table's width
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    console.print(table)


def check_shown(shown, metrics, ks) -> list[str]:
    """The ``name@K`` rows to show: ``shown`` (each checked against the run's metrics and
    Ks) or every computed metric at every K."""
    from mgnm.evaluation.metrics import check_metrics

    if not shown:
        return [f"{m}@{k}" for m in metrics for k in ks]
    for s in shown:
        name, _, k = s.partition("@")
        check_metrics([name], f"--metric {s!r}")
        if not k.isdigit() or int(k) not in ks:
            raise click.UsageError(f"--metric {s!r}: K must be one of the run's topk "
                                   f"{list(ks)}")
        if name not in metrics:
            raise click.UsageError(f"--metric {s!r}: the run does not compute {name!r} "
                                   f"(its metrics: {', '.join(metrics)})")
    return list(shown)


def rows_table(title: str, rows, names: list[str]) -> None:
    """One row per group (its users and each of ``names`` it has), one table per K."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    ks = sorted({int(n.partition("@")[2]) for n in names})
    for k in ks:
        cols = [n for n in names if n.endswith(f"@{k}") and any(n in r.means for r in rows)]
        if not cols:
            continue
        table = Table(title=f"K = {k}")
        table.add_column("group")
        table.add_column("users", justify="right")
        for c in cols:
            table.add_column(c.partition("@")[0], justify="right")
        for r in rows:
            table.add_row(r.group, str(r.users),
                          *(f"{r.means[c]:.4f}" if c in r.means else "-" for c in cols))
        console.print(table)



def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError(f"--seeds {spec!r}: expected comma-separated integers") from None
    if not seeds:
        raise click.UsageError("--seeds: give at least one seed")
    return seeds




def ray_options(unit: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--backend``, ``--address``, ``--cpus-per-run``, ``--gpus-per-run``; ``unit`` names
    what each Ray task is (a run, a trial) in the help."""
    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0,
                          show_default=True,
                          help=f"ray: GPUs (or a fraction) each {unit} reserves.")(fn)
        fn = click.option("--cpus-per-run", type=click.FloatRange(min=0, min_open=True),
                          default=1.0, show_default=True,
                          help=f"ray: CPUs each {unit} reserves.")(fn)
        fn = click.option("--address", help="ray: join this cluster (auto, HOST:PORT or "
                          "ray://HOST:PORT); default: start a local one. --out must then be on "
                          "a filesystem every node shares.")(fn)
        return click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
                            show_default=True, help=f"ray: every {unit} is a Ray task (pip "
                            "install 'mgnm[ray]'; see docs/distributed.md).")(fn)
    return add


def ray_settings(address, cpus_per_run, gpus_per_run) -> dict[str, Any]:
    return {"address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run}
