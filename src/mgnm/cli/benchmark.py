"""``mgnm benchmark`` and ``mgnm spaces``: every model tuned with the same budget."""

from __future__ import annotations

from pathlib import Path

import click

from mgnm.cli.common import parse_seeds, ray_options, ray_settings
from mgnm.cli.track import track_kind, track_options


@click.command()
@click.option("--data", "-d", type=click.Path(), required=True, help="MMRec-format dataset directory.")
@click.option("--models", required=True, help="Comma-separated models (see `mgnm spaces`).")
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Trials per model (a rerun continues the stored studies).")
@click.option("--seeds", default="1,2,3", show_default=True,
              help="Seeds of the runs of each chosen configuration.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Epochs at most, per trial and per seed run.")
@click.option("--patience", type=click.IntRange(min=0), default=20, show_default=True,
              help="Early stopping: epochs without a validation improvement.")
@click.option("--pruner", type=click.Choice(["median", "asha", "none"]), default="median",
              show_default=True)
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option("--tune-seed", type=click.IntRange(min=0), default=999, show_default=True,
              help="Seed of the sampler and of every trial's run.")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs every trial runs before it can be pruned.")
@click.option("--startup-trials", type=click.IntRange(min=0), default=5, show_default=True,
              help="median: trials that finish before the pruner compares.")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of flat config keys.")
@click.option("--preset", help="A named preset every model starts from (its keys that the "
              "model has).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Config key for every model that has it.")
@click.option("--out", type=click.Path(), help="Benchmark directory (default benchmark/<data>).")
@click.option("--format", "form", type=click.Choice(["md", "csv", "latex", "json"]),
              default="md", show_default=True, help="What is printed (all four are written).")
@ray_options("trial and run")
@track_options
def benchmark(data, models, trials, seeds, max_epochs, patience, pruner, sampler, tune_seed,
              warmup_epochs, startup_trials, config_file, preset, sets, out, form, backend,
              address, cpus_per_run, gpus_per_run, track, tracking_uri) -> None:
    """Tune every model with the same budget (selected on validation), run each chosen
    configuration with every seed, and print one table with significance marks. Run again
    to continue: studies and finished runs are reused, interrupted ones resume."""
    from mgnm.benchmark.run import Budget, run_benchmark
    from mgnm.benchmark.table import render, write_all
    from mgnm.config import flat_sources
    from mgnm.errors import MgnmError

    base = flat_sources(preset, config_file, sets)
    base["tracking"] = track_kind(track, base.get("tracking"), tracking_uri)
    budget = Budget(trials, max_epochs, patience, tuple(parse_seeds(seeds)), pruner, sampler,
                    tune_seed, warmup_epochs, startup_trials)
    names = [m.strip() for m in models.split(",") if m.strip()]
    out_dir = Path(out) if out else Path("benchmark") / Path(data).resolve().name
    result = run_benchmark(data, names, budget, out_dir, base, backend=backend,
                           ray_options=ray_settings(address, cpus_per_run, gpus_per_run),
                           tracking_uri=tracking_uri,
                           on_line=lambda line: click.echo(line, err=True))
    write_all(result)
    click.echo(render(result, form), nl=False)
    click.echo(result.counts_line(), err=True)
    failed = [o for m in result.models for o in m.failed]
    if failed or any(m.row is None for m in result.models):
        raise MgnmError(f"{len(failed)} seed run(s) failed and "
                        f"{sum(m.row is None for m in result.models)} model(s) have no result "
                        f"(listed above; run the command again to retry)")


@click.command()
@click.argument("model", required=False)
def spaces(model) -> None:
    """List the search space shipped for every model, or print MODEL's."""
    from mgnm.tune.spaces import space_models, space_path, space_text

    if model:
        click.echo(f"# {space_path(model)}")
        click.echo(space_text(model), nl=False)
        return
    import yaml

    for name in space_models():
        keys = yaml.safe_load(space_text(name))
        click.echo(f"{name:10s} {', '.join(keys)}")
