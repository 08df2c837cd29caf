"""Pieces every command family shares: the metrics table, seed lists, the Ray options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

TOPK_SHOWN = ("recall", "ndcg")


def metrics_table(title: str, rows: dict[str, dict[str, float]], ks) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    for split in rows:
        table.add_column(split, justify="right")
    for m in TOPK_SHOWN:
        for k in ks:
            name = f"{m}@{k}"
            table.add_row(name, *(f"{r.get(name, float('nan')):.4f}" for r in rows.values()))
    console = Console()
    # the title on its own line: as the table's title it wrapped to the narrow table's width
    console.print(title, markup=False, highlight=False, soft_wrap=True)
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
