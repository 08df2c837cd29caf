"""``mgnm track`` and the ``--track`` options of ``train``, ``experiment`` and ``tune``:
thin layers over :mod:`mgnm.track` (see docs/tracking.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

TRACK_CHOICES = ["mlflow", "tensorboard", "none"]


def track_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--track`` and ``--tracking-uri``."""
    fn = click.option("--tracking-uri", metavar="URI",
                      help="mlflow: the tracking server or store (default: $MLFLOW_TRACKING_URI, "
                           "else sqlite:///<output directory>/mlflow.db).")(fn)
    return click.option("--track", type=click.Choice(TRACK_CHOICES),
                        help="Send the runs to MLflow or TensorBoard as they train (config key "
                             "'tracking'; extra 'track'; see docs/tracking.md).")(fn)


def train_track_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`track_options`, and (hidden) the folder run names are relative to and the
    MLflow experiment, which an experiment hands to the runs it starts in subprocesses."""
    fn = click.option("--track-base", hidden=True, type=click.Path())(fn)
    fn = click.option("--track-experiment", hidden=True)(fn)
    return track_options(fn)


def track_kind(track: str | None, configured: str | None, tracking_uri: str | None) -> str | None:
    """The tracker to use: ``--track`` (``none`` turns a config's off), else config key
    ``tracking``."""
    if isinstance(configured, str) and configured.lower() == "none":
        configured = None
    kind = configured if track is None else (None if track == "none" else track)
    if tracking_uri and kind != "mlflow":
        raise click.UsageError("--tracking-uri is for --track mlflow")
    return kind


def tracking(kind: str | None, base: Path, uri: str | None, push_hint: Path,
             track_base: str | None = None, track_experiment: str | None = None) -> Any:
    """A :class:`mgnm.track.Tracking` callback, or None without a tracker."""
    if kind is None:
        return None
    from mgnm.track import tracking_for

    return tracking_for(kind, Path(track_base) if track_base else base, uri=uri,
                        experiment=track_experiment, push_hint=push_hint)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--to", "to", type=click.Choice(["mlflow", "tensorboard"]), required=True,
              help="The tracker.")
@click.option("--tracking-uri", metavar="URI", help="mlflow: server or store (default: "
              "$MLFLOW_TRACKING_URI, else sqlite:///<the paths' common folder>/mlflow.db).")
@click.option("--experiment", "experiment_name", metavar="NAME", help="mlflow: the experiment "
              "(default: $MLFLOW_EXPERIMENT_NAME, else the paths' common folder's name).")
def track(paths, to, tracking_uri, experiment_name) -> None:
    """Send runs to MLflow or TensorBoard from their files: run directories, or folders of
    them (an experiment, a tuning search). Pushing again sends only what is new."""
    if to != "mlflow" and (tracking_uri or experiment_name):
        raise click.UsageError("--tracking-uri and --experiment are for --to mlflow")
    from mgnm.errors import MgnmError
    from mgnm.track import push

    report = push(list(paths), to, uri=tracking_uri, experiment=experiment_name)
    for line in report.lines:
        click.echo(line, err=True)
    click.echo(report.summary())
    if to == "mlflow":
        from mgnm.track.mlflow_target import is_local

        if report.uri and is_local(report.uri):
            click.echo(f"view: mlflow ui --backend-store-uri {report.uri}")
    else:
        click.echo(f"view: tensorboard --logdir {report.base}")
    if report.counts["failed"]:
        raise MgnmError(f"{report.counts['failed']} run(s) could not be sent (listed above)")
