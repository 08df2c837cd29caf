"""``mgnm prepare`` and ``mgnm features``: thin commands over :mod:`mgnm.prepare`.

Registered on the main group in :mod:`mgnm.cli`, which also turns their errors into one line
and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import click


def split_options(command):
    """``--split``, ``--seed``, ``--valid-from``, ``--test-from``: shared by both commands."""
    options = [
        click.option("--split", type=click.Choice(["random", "time", "loo", "timestamp"]),
                     default="random", show_default=True, help="random: MMRec's per-user "
                     "split; time: the same counts, latest held out; loo: per user the latest "
                     "to test, the one before to validation; timestamp: absolute cuts."),
        click.option("--seed", type=int, default=999, show_default=True,
                     help="Seed of the random and time splits."),
        click.option("--valid-from", metavar="T1", help="--split timestamp: rows at or after "
                     "T1 (and before T2) go to validation; a number in the time's unit or an "
                     "ISO-8601 date."),
        click.option("--test-from", metavar="T2", help="--split timestamp: rows at or after "
                     "T2 go to test."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
@click.option("--keep", type=click.Choice(["latest", "earliest"]), default="latest",
              show_default=True, help="Which row of a repeated (user, item) pair stays.")
@click.option("--k-core", type=int, default=5, show_default=True, help="Minimum interactions "
              "per user and per item, applied until stable.")
@split_options
@click.option("--name", help="Dataset name (default: the --out directory's name).")
@click.option("--quiet", "-q", is_flag=True, help="Only the final 'wrote' line: no "
              "progress, no per-step counts.")
def interactions(log_file, out, user, item, time_col, rating, min_rating, fmt, keep, k_core,
                 split, seed, valid_from, test_from, name, quiet) -> None:
    """Turn an interaction log (CSV, TSV or JSON lines, gzip too) into a dataset directory."""
    from mgnm.prepare.pipeline import prepare_interactions, summary

    record = prepare_interactions(log_file, out, user, item, time_col, rating, min_rating, fmt,
                                  k_core, split, seed, name, quiet, keep=keep,
                                  valid_from=valid_from, test_from=test_from)
    click.echo(summary(record, Path(out), steps=not quiet))


@prepare.command("amazon")
@click.option("--reviews", required=True, type=click.Path(), help="reviews_<Cat>_5.json.gz "
              "(2014), <Cat>_5.json.gz (2018) or <Cat>.jsonl.gz (2023): one JSON review per "
              "line.")
@click.option("--meta", required=True, type=click.Path(), help="meta_<Cat>.json.gz (2014: "
              "Python literals; 2018: JSON) or meta_<Cat>.jsonl.gz (2023): one product per line.")
@click.option("--format", "fmt", type=click.Choice(["2014", "2018", "2023"]),
              help="Release of the files (default: from their fields).")
@click.option("--image-features", type=click.Path(), help="image_features_<Cat>.b (2014/2018): "
              "10-byte ASIN + 4096 float32 per record.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Dataset directory to create.")
@click.option("--no-text", is_flag=True, help="Skip text_feat.npy (titles still go to "
              "i_id_map.tsv).")
@click.option("--k-core", type=int, default=5, show_default=True)
@split_options
@click.option("--name", help="Dataset name (default: the --out directory's name).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Text encoder batch.")
@click.option("--device", default="cpu", show_default=True, help="Text encoder device.")
@click.option("--quiet", "-q", is_flag=True, help="Only the final 'wrote' line: no "
              "progress, no per-step counts.")
def amazon(reviews, meta, fmt, image_features, out, no_text, k_core, split, seed, valid_from,
           test_from, name, batch_size, device, quiet) -> None:
    """Amazon review datasets (the paper's 2014 files, the 2018 and 2023 releases)."""
    from mgnm.prepare.amazon import prepare_amazon
    from mgnm.prepare.pipeline import summary

    record = prepare_amazon(reviews, meta, out, image_features, not no_text, k_core, seed, name,
                            batch_size, device, quiet, fmt=fmt, split=split,
                            valid_from=valid_from, test_from=test_from)
    if not quiet:
        click.echo(f"Amazon {record['release']} files")
    click.echo(summary(record, Path(out), steps=not quiet))
    for modality, info in record["features"].items() if not quiet else ():
        click.echo(f"{modality}_feat.npy: " + ", ".join(f"{k} {v}" for k, v in info.items()))


@click.group()
def features() -> None:
    """Add a modality (``<name>_feat.npy``) to a dataset directory from item texts or images."""


@features.command("text")
@click.argument("data_dir", type=click.Path())
@click.option("--items", required=True, type=click.Path(), help="TSV with a header: column "
              "'id' (original item ID; 'itemID' where the dataset has no i_id_map.tsv) and text.")
@click.option("--columns", required=True, help="Comma-separated text columns, joined in order.")
@click.option("--name", default="text", show_default=True, help="Modality: writes NAME_feat.npy.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--replace", is_flag=True, help="Overwrite an existing NAME_feat.npy.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def text(data_dir, items, columns, name, batch_size, device, replace, quiet) -> None:
    """Text modality from all-MiniLM-L6-v2 (384-d, offline; extra 'text')."""
    from mgnm.prepare.features import text_features

    cols = [c.strip() for c in columns.split(",") if c.strip()]
    info = text_features(data_dir, items, cols, name, batch_size, device, replace, quiet)
    click.echo(f"wrote {Path(data_dir) / f'{name}_feat.npy'}: " +
               ", ".join(f"{k} {v}" for k, v in info.items()))


@features.command("image")
@click.argument("data_dir", type=click.Path())
@click.option("--images", required=True, type=click.Path(), help="Folder with one image per "
              "item, named by the original item ID (B000123.jpg).")
@click.option("--name", default="image", show_default=True, help="Modality: writes NAME_feat.npy.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--replace", is_flag=True, help="Overwrite an existing NAME_feat.npy.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def image(data_dir, images, name, batch_size, device, replace, quiet) -> None:
    """Image modality from EfficientNet-Lite0 (1280-d pooled head, offline; extra 'image')."""
    from mgnm.prepare.features import image_features

    info = image_features(data_dir, images, name, batch_size, device, replace, quiet)
    click.echo(f"wrote {Path(data_dir) / f'{name}_feat.npy'}: " +
               ", ".join(f"{k} {v}" for k, v in info.items()))
