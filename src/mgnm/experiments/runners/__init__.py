"""Runners: how the planned runs of an experiment or a search are executed, on this machine
(:mod:`.local`) or as Ray tasks (:mod:`.ray`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mgnm.errors import ConfigError
from mgnm.experiments.grid import RunOutcome, RunSpec
from mgnm.experiments.runners.local import run_all_local
from mgnm.track import tracking_for
from mgnm.train.trainer import Callback


def run_all(
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    on_done: Callable[[RunOutcome], None] | None = None,
    callbacks: Sequence[Callback] = (),
    backend: str = "local",
    ray_options: dict[str, Any] | None = None,
    on_running: Callable[[int], None] | None = None,
    train_args: Sequence[str] = (),
) -> list[RunOutcome]:
    """Run every spec; a failing run is recorded, the others go on.

    ``backend="local"``: :func:`.local.run_all_local` (``jobs`` at once). ``backend="ray"``:
    every run is a Ray task (:func:`.ray.run_all_ray`, ``ray_options`` its keywords).
    ``on_running`` is told how many runs are in progress whenever that changes."""
    if backend == "ray":
        from mgnm.experiments.runners.ray import run_all_ray  # Ray is an optional extra

        return run_all_ray(specs, on_done=on_done, callbacks=callbacks,
                           on_running=on_running, **(ray_options or {}))
    if backend != "local":
        raise ConfigError(f"unknown backend {backend!r}; backends: local, ray")
    return run_all_local(specs, jobs=jobs, on_done=on_done, callbacks=callbacks,
                         on_running=on_running, train_args=train_args)


def run_tracked(
    specs: Sequence[RunSpec],
    tracking: str | None,
    folder: Path,
    *,
    tracking_uri: str | None = None,
    push_hint: Path | None = None,
    on_done: Callable[[RunOutcome], None] | None = None,
    **run_kw: Any,
) -> list[RunOutcome]:
    """:func:`run_all`, with the runs sent to the tracker ``tracking`` names (config key
    ``tracking``; none: untracked) whose runs live in ``folder``: each run live as it
    trains, and every finished run, reused ones too, from its files when it is done."""
    tracker = tracking_for(tracking, folder, uri=tracking_uri, push_hint=push_hint)
    if tracker is None:
        return run_all(specs, on_done=on_done, **run_kw)
    tracker.start()

    def done(o: RunOutcome) -> None:
        if on_done is not None:
            on_done(o)
        tracker.sync(o.spec.run_dir)

    try:
        return run_all(specs, on_done=done, callbacks=[tracker],
                       train_args=tracker.train_args(), **run_kw)
    finally:
        tracker.close()
