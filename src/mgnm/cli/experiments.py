"""``mgnm experiment`` and ``mgnm tune``: many runs, planned, run locally or on Ray."""

from __future__ import annotations

from pathlib import Path

import click

from mgnm.cli.common import parse_seeds, ray_options, ray_settings
from mgnm.cli.track import track_kind, track_options


@click.command()
@click.argument("name", type=click.Choice(["table1", "modalities", "ablation", "sensitivity",
                                           "grid"]))
@click.option("--data", "-d", type=click.Path(), required=True, help="MMRec-format dataset directory.")
@click.option("--seeds", default="999", show_default=True, help="Comma-separated seeds.")
@click.option("--models", help="table1: comma-separated models (default: all of Table I, "
              "FREEDOM, LGMRec, MGNM).")
@click.option("--model", "-m", default="mgnm", show_default=True, help="grid: the model.")
@click.option("--reference-grids", is_flag=True, help="table1: search each model's reference "
              "grid (selection on validation); default: one run with each model's defaults.")
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=[V1,V2]",
              help="grid: a key and its list of values; repeatable.")
@click.option("--presets-for", "preset_suffix", metavar="DATASET",
              help="table1: start each model from its preset <model>-DATASET where one exists.")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of flat config keys.")
@click.option("--preset", help="A named preset (see `mgnm presets`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config key for every run.")
@click.option("--out", type=click.Path(), help="Experiment directory (default experiments/<name>-<data>).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Runs at once (in subprocesses; each gets config key threads = cores / N "
              "unless --set threads=... is given).")
@click.option("--keep-checkpoints/--no-keep-checkpoints", default=None,
              help="Keep checkpoint.pt of runs that finished. Default: not kept (best.pt and "
              "result.json stay; interrupted runs keep theirs to resume), unless --set "
              "keep_checkpoint=true.")
@click.option("--plot", is_flag=True, help="Also write plots (needs matplotlib).")
@ray_options("run")
@track_options
def experiment(name, data, seeds, models, model, reference_grids, grid_items, preset_suffix,
               config_file, preset, sets, out, jobs, keep_checkpoints, plot, backend, address,
               cpus_per_run, gpus_per_run, track, tracking_uri) -> None:
    """Run one of the paper's experiments (or any grid) and write its table.

    Every run is keyed by its whole resolved config: run again with the same config, finished
    runs are reused and interrupted ones resumed; a changed --set/--config/--preset makes new
    runs. Exits with status 2 when a run failed or none finished.
    """
    from mgnm.config import flat_sources, parse_set
    from mgnm.experiments import sweep

    base = flat_sources(preset, config_file, sets)
    base.pop("model", None)
    base["tracking"] = track_kind(track, base.get("tracking"), tracking_uri)
    out_dir = Path(out) if out else Path("experiments") / f"{name}-{Path(data).resolve().name}"
    result = sweep.run_experiment(
        name, data, out_dir, parse_seeds(seeds), base, jobs=jobs, plot=plot, backend=backend,
        keep_checkpoints=keep_checkpoints,
        ray_options=ray_settings(address, cpus_per_run, gpus_per_run),
        models=[m.strip() for m in models.split(",")] if models else None, model=model,
        reference_grids=reference_grids, grid=parse_set(grid_items),
        preset_suffix=preset_suffix, tracking_uri=tracking_uri)
    click.echo(result.text)
    click.echo(result.counts_line(), err=True)
    result.check()


@click.command()
@click.argument("model")
@click.option("--data", "-d", type=click.Path(), required=True, help="MMRec-format dataset directory.")
@click.option("--space", "space", type=click.Path(),
              help="YAML search space (see docs/tuning.md; default: the model's shipped space, "
              "`mgnm spaces MODEL`).")
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Trials to finish in total (a rerun continues the stored study).")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe",
              show_default=True)
@click.option("--pruner", type=click.Choice(["median", "asha", "none"]), default="median",
              show_default=True, help="Stops trials whose validation curve lags (per epoch).")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs every trial runs before it can be pruned.")
@click.option("--startup-trials", type=click.IntRange(min=0), default=5, show_default=True,
              help="median: trials that finish before the pruner compares.")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of flat config keys.")
@click.option("--preset", help="A named preset to start from (see `mgnm presets`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config key for every trial.")
@click.option("--out", type=click.Path(), help="Search directory (default tune/<model>-<data>).")
@click.option("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db).")
@ray_options("trial")
@track_options
def tune(model, data, space, trials, sampler, pruner, warmup_epochs, startup_trials, config_file,
         preset, sets, out, storage, backend, address, cpus_per_run, gpus_per_run, track,
         tracking_uri) -> None:
    """Search MODEL's hyper-parameters with Optuna, selected on validation; the chosen
    trial's test metrics are computed once, at the end. Rerun to continue a search."""
    from mgnm.config import flat_sources
    from mgnm.tune.search import tune as run_tune
    from mgnm.tune.spaces import space_path

    if space is None:
        space = space_path(model)
    base = flat_sources(preset, config_file, sets)
    base["tracking"] = track_kind(track, base.get("tracking"), tracking_uri)
    out_dir = Path(out) if out else Path("tune") / f"{model}-{Path(data).resolve().name}"
    result = run_tune(model, data, space, trials, out_dir, base=base, sampler=sampler,
                      pruner=pruner, warmup_epochs=warmup_epochs,
                      startup_trials=startup_trials, backend=backend,
                      storage=storage, on_trial=lambda line: click.echo(line, err=True),
                      ray_options=ray_settings(address, cpus_per_run, gpus_per_run),
                      tracking_uri=tracking_uri)
    click.echo(result.text())


