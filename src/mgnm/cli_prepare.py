"""``mgnm prepare`` and ``mgnm features``: thin commands over :mod:`mgnm.prepare`.

Registered on the main group in :mod:`mgnm.cli`, which also turns their errors into one line
and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def prepare() -> None:
    """Build an MMRec-format dataset from raw data (see docs/prepare.md)."""


@prepare.command("interactions")
@click.argument("log_file", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Dataset directory to create.")
@click.option("--user", required=True, help="Column (JSON key) of the user ID.")
@click.option("--item", required=True, help="Column (JSON key) of the item ID.")
@click.option("--time", "time_col", help="Column of the time (number or ISO-8601 date).")
@click.option("--rating", help="Column of the rating (kept in the .inter).")
@click.option("--min-rating", type=float, help="Drop rows rated below this (needs --rating).")
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "jsonl"]),
              help="Input format (default: from the file name; gzip is detected).")
@click.option("--k-core", type=int, default=5, show_default=True, help="Minimum interactions "
              "per user and per item, applied until stable.")
@click.option("--split", type=click.Choice(["random", "time"]), default="random",
              show_default=True, help="MMRec's per-user random split, or the latest held out.")
@click.option("--seed", type=int, default=999, show_default=True, help="Seed of the split.")
@click.option("--name", help="Dataset name (default: the --out directory's name).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def interactions(log_file, out, user, item, time_col, rating, min_rating, fmt, k_core, split,
                 seed, name, quiet) -> None:
    """Turn an interaction log (CSV, TSV or JSON lines, gzip too) into a dataset directory."""
    from mgnm.prepare.pipeline import prepare_interactions, summary

    record = prepare_interactions(log_file, out, user, item, time_col, rating, min_rating, fmt,
                                  k_core, split, seed, name, quiet)
    click.echo(summary(record, Path(out)))


@click.group()
def features() -> None:
    """Add a modality (``<name>_feat.npy``) to a dataset directory from item texts or images."""
