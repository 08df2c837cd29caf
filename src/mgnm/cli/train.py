"""``mgnm train``, ``evaluate`` and ``plot``: one run, its metrics and its curves."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from mgnm.cli.common import metrics_table
from mgnm.cli.track import track_kind, tracking, train_track_options


def _default_run_dir(model: str, dataset: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{dataset}-s{seed}-{stamp}"



@click.command()
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
    from mgnm import api, runs
    from mgnm.config import parse_set
    from mgnm.train.progress import default_progress
    from mgnm.train.trainer import resume

    if resume_dir:
        given = [("--model", model), ("--data", data), ("--config", config_file),
                 ("--preset", preset), ("--seed", seed), ("--out", out)]
        others = [n for n, v in given if v is not None] + (["--set"] if sets else [])
        if others:
            raise click.UsageError(f"--resume uses the run's saved config; drop "
                                   f"{', '.join(others)}")
        from mgnm.runs import read_config

        cfg = read_config(resume_dir)
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
        if (run_dir / runs.CHECKPOINT).exists():
            raise click.UsageError(f"{run_dir} already holds a run; use --resume {run_dir} to "
                                   f"continue it or choose another --out")
        tracker = tracking(track_kind(None, cfg.train.tracking, tracking_uri),
                           run_dir.absolute().parent, tracking_uri, run_dir, track_base,
                           track_experiment)
        trainer = Trainer(cfg, run_dir=run_dir,
                          callbacks=[*default_progress(cfg.train.valid_metric, quiet),
                                     *([tracker] if tracker else [])])
        result = trainer.run()
    metrics_table(f"{result.model} on {result.dataset}: best epoch {result.best_epoch} "
                   f"of {result.epochs_run}",
                   {"valid": result.valid, "test": result.test}, cfg.train.topk)
    click.echo(f"{result.train_seconds_per_epoch:.2f} s/epoch, {result.eval_seconds:.2f} s/"
               f"evaluation; run directory: {result.run_dir}")


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--per-user", is_flag=True, help="Also write the per-user values of validation "
              "and test to RUN_DIR/per_user.npz (runs written before every run kept them).")
@click.option("--by", "by", metavar="GROUPING", help="Metrics by group: users:degree[:N] (N "
              "quantile groups of users by training interactions, default 4) or "
              "items:popularity (short-head targets, then long-tail targets).")
@click.option("--split", type=click.Choice(["valid", "test"]), default="test",
              show_default=True, help="The split --by groups.")
@click.option("--metric", "shown", multiple=True, metavar="NAME@K",
              help="Show only this metric (repeatable; default: every metric at every K).")
def evaluate(run_dir, data, device, as_json, per_user, by, split, shown) -> None:
    """Re-evaluate a run's best model on validation and test (docs/evaluation.md)."""
    from mgnm import api, runs
    from mgnm.cli.common import check_shown, rows_table

    cfg = runs.read_config(run_dir)
    names = check_shown(shown, cfg.train.metrics, cfg.train.topk)
    if by is not None:
        from mgnm.evaluation.groups import parse_grouping

        parse_grouping(by)  # a bad --by fails before the run is loaded
        rows = api.evaluate_groups(run_dir, by, split, data=data, device=device)
        if as_json:
            click.echo(json.dumps({"split": split, "by": by,
                                   "groups": [r.to_dict() for r in rows]}, indent=2))
            return
        rows_table(f"{cfg.model}: {run_dir}, {split}, by {by}", rows, names)
        return
    res = api.evaluate_run(run_dir, data=data, device=device, per_user=per_user)
    if as_json:
        click.echo(json.dumps(res, indent=2))
    else:
        metrics_table(f"{cfg.model}: {run_dir}", res, cfg.train.topk, names)
    if per_user:
        from mgnm.evaluation.peruser import PER_USER_FILE

        click.echo(f"wrote per-user values to {Path(run_dir) / PER_USER_FILE}", err=as_json)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", type=click.Path(), default="curves.png", show_default=True,
              help="Image file (its suffix names the format); missing directories are created.")
@click.option("--metric", help="Validation metric to plot (default: the run's valid_metric).")
def plot(run_dirs, output, metric) -> None:
    """Plot validation metric and training loss per epoch of one or more runs."""
    from mgnm.plots import plot_curves

    click.echo(f"wrote {plot_curves([Path(d) for d in run_dirs], Path(output), metric)}")


