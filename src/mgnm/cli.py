"""The ``mgnm`` command line: a thin layer over :mod:`mgnm.api` and :mod:`mgnm.experiments`.

Errors caused by input (data, config, checkpoints) print one line and exit with status 2.
"""

from __future__ import annotations

import json
import sys
import warnings
from datetime import datetime
from pathlib import Path

import click

from mgnm.cli_prepare import features, prepare
from mgnm.cli_track import track, track_kind, track_options, tracking, train_track_options
from mgnm.errors import MgnmError

TOPK_SHOWN = ("recall", "ndcg")
# the line after Ctrl+C, by command: how to continue where there is a way
AFTER_INTERRUPT = {
    "train": "interrupted (continue the run with `mgnm train --resume RUN_DIR`)",
    "experiment": "interrupted (run the same `mgnm experiment` command again: finished runs "
                  "are reused and interrupted ones resume)",
    "tune": "interrupted (run the same `mgnm tune` command again to continue the search: "
            "the interrupted trial is re-queued and resumes from its checkpoint)",
    "serve": "stopped",
}


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"warning: {message}", file=sys.stderr)


def _default_run_dir(model: str, dataset: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{dataset}-s{seed}-{stamp}"


def _metrics_table(title: str, rows: dict[str, dict[str, float]], ks) -> None:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mgnm")
def cli() -> None:
    """MGNM and its baselines for multimodal recommendation on MMRec-format data."""


@cli.command()
@click.option("--model", "-m", help="Model name (see `mgnm models`).")
@click.option("--data", "-d", type=click.Path(), help="MMRec-format dataset directory "
              "(default: the bundled MovieLens demo).")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of flat config keys.")
@click.option("--preset", help="A named preset shipped with mgnm (see `mgnm presets`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config key; repeatable.")
@click.option("--seed", type=int, help="Random seed (default 999).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads (config key "
              "'threads'; default 1: see README, Performance).")
@click.option("--out", type=click.Path(), help="Run directory (default runs/<model>-<data>-s<seed>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(),
              help="Continue the interrupted run in this directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@train_track_options
def train(model, data, config_file, preset, sets, seed, device, threads, out, resume_dir,
          quiet, track, tracking_uri, track_base, track_experiment) -> None:
    """Train a model to early stopping; writes a run directory with result.json."""
    from mgnm import api
    from mgnm.train.config import parse_set
    from mgnm.train.progress import default_progress
    from mgnm.train.trainer import resume

    if resume_dir:
        given = [("--model", model), ("--data", data), ("--config", config_file),
                 ("--preset", preset), ("--seed", seed), ("--out", out)]
        others = [n for n, v in given if v is not None] + (["--set"] if sets else [])
        if others:
            raise click.UsageError(f"--resume uses the run's saved config; drop "
                                   f"{', '.join(others)}")
        from mgnm.train.trainer import load_run_config

        cfg = load_run_config(resume_dir)
        run_dir = Path(resume_dir)
        tracker = tracking(track_kind(track, cfg.train.tracking, tracking_uri),
                           run_dir.absolute().parent, tracking_uri, run_dir, track_base,
                           track_experiment)
        result = resume(resume_dir, device=device, threads=threads,
                        callbacks=[*default_progress(cfg.train.valid_metric, quiet),
                                   *([tracker] if tracker else [])])
    else:
        overrides = parse_set(sets)
        if seed is not None:
            overrides["seed"] = seed
        if device is not None:
            overrides["device"] = device
        if threads is not None:
            overrides["threads"] = threads
        if track is not None:
            overrides["tracking"] = None if track == "none" else track
        cfg = api.make_config(model, data, preset=preset, config_file=config_file,
                              overrides=overrides)
        from mgnm.train.trainer import Trainer

        dataset_name = Path(cfg.data).resolve().name if cfg.data else "data"
        run_dir = Path(out) if out else _default_run_dir(cfg.model, dataset_name,
                                                         cfg.train.seed)
        if (run_dir / "checkpoint.pt").exists():
            raise click.UsageError(f"{run_dir} already holds a run; use --resume {run_dir} to "
                                   f"continue it or choose another --out")
        tracker = tracking(track_kind(None, cfg.train.tracking, tracking_uri),
                           run_dir.absolute().parent, tracking_uri, run_dir, track_base,
                           track_experiment)
        trainer = Trainer(cfg, run_dir=run_dir,
                          callbacks=[*default_progress(cfg.train.valid_metric, quiet),
                                     *([tracker] if tracker else [])])
        result = trainer.run()
    _metrics_table(f"{result.model} on {result.dataset}: best epoch {result.best_epoch} "
                   f"of {result.epochs_run}",
                   {"valid": result.valid, "test": result.test}, cfg.train.topk)
    click.echo(f"{result.train_seconds_per_epoch:.2f} s/epoch, {result.eval_seconds:.2f} s/"
               f"evaluation; run directory: {result.run_dir}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(run_dir, data, device, as_json) -> None:
    """Re-evaluate a run's best model on validation and test."""
    from mgnm import api

    res = api.evaluate_run(run_dir, data=data, device=device)
    if as_json:
        click.echo(json.dumps(res, indent=2))
    else:
        cfg = api.load_run_config(run_dir)
        _metrics_table(f"{cfg.model}: {run_dir}", res, cfg.train.topk)


@cli.command()
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


@cli.command()
@click.argument("name", required=False)
def models(name) -> None:
    """List the models, or with NAME every config key of that model (type, default, meaning)."""
    from mgnm.models import MODELS, get_model_class
    from mgnm.train.config import describe_keys

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


@cli.command()
def presets() -> None:
    """List the named config presets."""
    from mgnm.train.config import load_preset, preset_names

    for name in preset_names():
        keys = load_preset(name)
        click.echo(f"{name:22s} " + ", ".join(f"{k}={v}" for k, v in keys.items()))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--users", help="Comma-separated user IDs (original IDs where the dataset has "
              "u_id_map.tsv, else indices), or @FILE with one per line.")
@click.option("--all-users", is_flag=True, help="Every user with a training interaction.")
@click.option("-k", "--k", "k", type=int, default=10, show_default=True)
@click.option("--output", "-o", type=click.Path(), help="Write the TSV (header row first) to "
              "this file (streamed, atomic) instead of printing it.")
@click.option("--include-train", is_flag=True, help="Do not exclude the users' training items.")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
def recommend(run_dir, users, all_users, k, output, include_train, data) -> None:
    """Top-K recommendations of a run's best model (tab-separated: user, rank, item, score,
    and the item's title where the dataset's i_id_map.tsv has one)."""
    from mgnm.predict.tasks import recommend_command

    recommend_command(run_dir, users, all_users, k, output, not include_train, data, click.echo)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--output", "-o", type=click.Path(), required=True, help="Output .npz file.")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
def export(run_dir, output, data) -> None:
    """Export a run's final user and item embeddings to .npz."""
    from mgnm import api

    path = api.export_embeddings(run_dir, output, data=data)
    click.echo(f"wrote {path}")


@cli.command("cold-split")
@click.argument("data_dir", type=click.Path())
@click.option("--fraction", type=float, default=0.1, show_default=True,
              help="Fraction of the items that leave training.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), required=True, help="New dataset directory.")
def cold_split(data_dir, fraction, seed, out) -> None:
    """Make a cold-start dataset: a seeded fraction of items leaves training (half of them
    with all their interactions become validation, half test)."""
    from mgnm.predict.coldsplit import cold_split as make

    s = make(data_dir, out, fraction, seed)
    click.echo(f"wrote {s.out}: {s.cold_valid_items} cold validation items, "
               f"{s.cold_test_items} cold test items; rows train {s.train_rows} / "
               f"valid {s.valid_rows} / test {s.test_rows}")


@cli.command("evaluate-cold")
@click.argument("run_dir", type=click.Path(), required=False)
@click.option("--data", "-d", type=click.Path(), help="Dataset directory (required with a "
              "reference scorer; else only if the run's data moved).")
@click.option("--reference", type=click.Choice(["content-knn", "popularity"]),
              help="Evaluate a data-only reference scorer on --data instead of a run.")
@click.option("--content-knn", is_flag=True, help="Same as --reference content-knn.")
@click.option("--catalogue", type=click.Choice(["all", "cold"]), default="all",
              show_default=True, help="Rank among every item (trained and cold, training "
              "items masked), or among the split's cold items only.")
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option("--weights", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="The best validation epoch's weights, or the last "
              "epoch's (checkpoint.pt; see docs/serving.md).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate_cold(run_dir, data, reference, content_knn, catalogue, split, weights,
                  as_json) -> None:
    """Rank a cold-start split's cold items for each user who has one (Recall/NDCG@K), among
    the whole catalogue or among the cold items only."""
    from mgnm.predict.coldeval import evaluate_cold as run_eval

    if content_knn:
        if reference not in (None, "content-knn"):
            raise click.UsageError("give either --content-knn or --reference, not both")
        reference = "content-knn"
    if (reference is not None) == (run_dir is not None):
        raise click.UsageError("give a RUN_DIR, or --reference NAME with --data")
    res = run_eval(run_dir, data=data, split=split, weights=weights, catalogue=catalogue,
                   reference=reference or "content-knn")
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
    line = (f"{res['scorer']} on {split} ({catalogue} items): {res['cold_items']} cold items, "
            f"{res['users']} users  {metrics}")
    if catalogue == "all":
        line += (f"  cold share of top-20 {res['cold_share_of_top']['cold_share@20']:.4f} "
                 f"(of the catalogue {res['cold_share_of_catalogue']:.4f})")
    click.echo(line)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-body-kb", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Largest request body accepted (larger: 413).")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
@click.option("--access-log", is_flag=True, help="One line per request on stdout (time, "
              "client, request, status).")
def serve(run_dir, host, port, max_body_kb, data, access_log) -> None:
    """Serve a run over HTTP (FastAPI + uvicorn; extra `serve`). See docs/serving.md."""
    from mgnm.serve import require_serve_extra

    require_serve_extra()
    from mgnm.serve.app import run_server

    run_server(run_dir, host, port, data=data, max_body=max_body_kb * 1024,
               access_log=access_log, echo=click.echo)


def _parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError(f"--seeds {spec!r}: expected comma-separated integers") from None
    if not seeds:
        raise click.UsageError("--seeds: give at least one seed")
    return seeds


@cli.command()
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
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: every run is a Ray task (pip install 'mgnm[ray]'; see docs/distributed.md).")
@click.option("--address", help="ray: join this cluster (auto, HOST:PORT or ray://HOST:PORT); "
              "default: start a local one. --out must then be on a filesystem every node shares.")
@click.option("--cpus-per-run", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="ray: CPUs each run reserves.")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="ray: GPUs (or a fraction) each run reserves.")
@track_options
def experiment(name, data, seeds, models, model, reference_grids, grid_items, preset_suffix,
               config_file, preset, sets, out, jobs, keep_checkpoints, plot, backend, address,
               cpus_per_run, gpus_per_run, track, tracking_uri) -> None:
    """Run one of the paper's experiments (or any grid) and write its table.

    Every run is keyed by its whole resolved config: run again with the same config, finished
    runs are reused and interrupted ones resumed; a changed --set/--config/--preset makes new
    runs. Exits with status 2 when a run failed or none finished.
    """
    from mgnm.experiments import sweep
    from mgnm.train.config import flat_sources, parse_set

    base = flat_sources(preset, config_file, sets)
    base.pop("model", None)
    base["tracking"] = track_kind(track, base.get("tracking"), tracking_uri)
    out_dir = Path(out) if out else Path("experiments") / f"{name}-{Path(data).resolve().name}"
    result = sweep.run_experiment(
        name, data, out_dir, _parse_seeds(seeds), base, jobs=jobs, plot=plot, backend=backend,
        keep_checkpoints=keep_checkpoints,
        ray_options={"address": address, "cpus_per_run": cpus_per_run,
                     "gpus_per_run": gpus_per_run},
        models=[m.strip() for m in models.split(",")] if models else None, model=model,
        reference_grids=reference_grids, grid=parse_set(grid_items),
        preset_suffix=preset_suffix, tracking_uri=tracking_uri)
    click.echo(result.text)
    click.echo(result.counts_line(), err=True)
    result.check()


@cli.command()
@click.argument("model")
@click.option("--data", "-d", type=click.Path(), required=True, help="MMRec-format dataset directory.")
@click.option("--space", "space", type=click.Path(), required=True,
              help="YAML search space (see docs/tuning.md).")
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
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="ray: join this cluster (auto, HOST:PORT or ray://HOST:PORT).")
@click.option("--cpus-per-run", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="ray: CPUs each trial reserves.")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="ray: GPUs (or a fraction) each trial reserves.")
@track_options
def tune(model, data, space, trials, sampler, pruner, warmup_epochs, startup_trials, config_file,
         preset, sets, out, storage, backend, address, cpus_per_run, gpus_per_run, track,
         tracking_uri) -> None:
    """Search MODEL's hyper-parameters with Optuna, selected on validation; the chosen
    trial's test metrics are computed once, at the end. Rerun to continue a search."""
    from mgnm.train.config import flat_sources
    from mgnm.tune.search import tune as run_tune

    base = flat_sources(preset, config_file, sets)
    base["tracking"] = track_kind(track, base.get("tracking"), tracking_uri)
    out_dir = Path(out) if out else Path("tune") / f"{model}-{Path(data).resolve().name}"
    result = run_tune(model, data, space, trials, out_dir, base=base, sampler=sampler,
                      pruner=pruner, warmup_epochs=warmup_epochs,
                      startup_trials=startup_trials, backend=backend,
                      storage=storage, on_trial=lambda line: click.echo(line, err=True),
                      ray_options={"address": address, "cpus_per_run": cpus_per_run,
                                   "gpus_per_run": gpus_per_run}, tracking_uri=tracking_uri)
    click.echo(result.text())


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", type=click.Path(), default="curves.png", show_default=True,
              help="Image file (its suffix names the format); missing directories are created.")
@click.option("--metric", help="Validation metric to plot (default: the run's valid_metric).")
def plot(run_dirs, output, metric) -> None:
    """Plot validation metric and training loss per epoch of one or more runs."""
    from mgnm.experiments.report import plot_curves

    click.echo(f"wrote {plot_curves([Path(d) for d in run_dirs], Path(output), metric)}")


cli.add_command(prepare)  # mgnm prepare interactions|amazon
cli.add_command(features)  # mgnm features text|image
cli.add_command(track)  # mgnm track


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    try:
        rv = cli.main(args=argv, prog_name="mgnm", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except MgnmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # one line, like every other error
        where = exc.ctx.command_path if exc.ctx is not None else "mgnm"
        print(f"error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:  # an OS refusal the code did not name more precisely
        from mgnm.errors import os_error_message

        where = exc.filename if exc.filename is not None else "mgnm"
        print(f"error: {os_error_message(where, exc, 'failed')}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        args = sys.argv[1:] if argv is None else argv
        command = next((a for a in args if not a.startswith("-")), "")
        print(AFTER_INTERRUPT.get(command, "interrupted"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
