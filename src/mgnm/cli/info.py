"""``mgnm info``, ``models`` and ``presets``: what a dataset, the models and the presets are."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("data_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(data_dir, as_json) -> None:
    """Validate a dataset directory and print its statistics."""
    from mgnm.data.dataset import load_dataset

    stats = load_dataset(data_dir).stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"dataset        {stats['name']}  ({stats['path']})")
    click.echo(f"users          {stats['users']:,}")
    click.echo(f"items          {stats['items']:,}  ({stats['items_in_train']:,} in train)")
    click.echo(f"interactions   {stats['interactions']:,}  (train {stats['train']:,} / "
               f"valid {stats['valid']:,} / test {stats['test']:,})")
    click.echo(f"sparsity       {stats['sparsity']:.4%}")
    mods = ", ".join(f"{m} ({d}-d)" for m, d in stats["modalities"].items()) or "none"
    click.echo(f"modalities     {mods}")
    dropped = stats["users_dropped_from_eval"]
    click.echo(f"not evaluated  {dropped['valid']} valid / {dropped['test']} test users "
               f"(no training interaction)")
    if stats["duplicates_dropped"]:
        click.echo(f"duplicates     {stats['duplicates_dropped']} rows dropped")


@click.command()
@click.argument("name", required=False)
def models(name) -> None:
    """List the models, or with NAME every config key of that model (type, default, meaning)."""
    from mgnm.config import describe_keys
    from mgnm.models import MODELS, get_model_class

    if name is None:  # each description whole, wrapped under its own column
        import shutil
        import textwrap

        width = max(shutil.get_terminal_size((100, 24)).columns, 60)
        for model, cls in MODELS.items():
            feats = "features" if cls.needs_features else "IDs only"
            head = f"{model:10s} [{feats:8s}]  "
            click.echo(textwrap.fill(cls.summary(), width, initial_indent=head,
                                     subsequent_indent=" " * len(head),
                                     break_on_hyphens=False))
        return
    cls = get_model_class(name)
    for section, rows in describe_keys(cls).items():
        click.echo(f"{section}:")
        for key, typ, default, text in rows:
            click.echo(f"  {key:22s} {typ:18s} {default:12s} {text}")


@click.command()
def presets() -> None:
    """List the named config presets."""
    from mgnm.config import load_preset, preset_names

    for name in preset_names():
        keys = load_preset(name)
        click.echo(f"{name:22s} " + ", ".join(f"{k}={v}" for k, v in keys.items()))


