"""One experiment end to end: plan its runs, run them (local or Ray), write its tables.

The ``mgnm experiment`` command is a thin layer over :func:`run_experiment`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mgnm.experiments import paper, report
from mgnm.experiments.grid import (
    ExperimentError,
    RunOutcome,
    RunSpec,
    aggregate,
    select_best,
)
from mgnm.experiments.runners import run_tracked
from mgnm.plots import plot_curves


@dataclass
class ExperimentResult:
    title: str
    out: Path
    outcomes: list[RunOutcome]
    text: str  # the Markdown summary
    rows: list = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def reused(self) -> int:
        return sum(o.reused for o in self.outcomes)

    def counts_line(self) -> str:
        n, failed = len(self.outcomes), len(self.failed)
        return (f"{n} run{'s' if n != 1 else ''}: {n - failed - self.reused} trained, "
                f"{self.reused} reused (finished before with the same config), {failed} failed")

    def check(self) -> None:
        """Raise (exit status 2) when a run failed or none finished."""
        failed = self.failed
        if failed:
            raise ExperimentError(f"{len(failed)} of {len(self.outcomes)} runs failed (listed "
                                  f"above; finished runs are kept, run the command again to "
                                  f"retry the others)")
        if not any(o.result for o in self.outcomes):
            raise ExperimentError("no run finished")


def prepare_out(out: Path) -> Path:
    """Create the experiment directory and check that it is writable (one-line error)."""
    out = Path(out).absolute()
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExperimentError(f"{exc.filename or out}: cannot use as experiment directory "
                              f"({exc.strerror or exc})") from None
    return out


def plan(name: str, data: str | Path, out: Path, seeds: Sequence[int], base: dict[str, Any], *,
         models: Sequence[str] | None = None, model: str = "mgnm", reference_grids: bool = False,
         grid: dict[str, list] | None = None, preset_suffix: str | None = None
         ) -> tuple[str, list[RunSpec]]:
    """The title and runs of experiment ``name`` (table1, modalities, ablation, sensitivity,
    grid)."""
    if name == "table1":
        return paper.table1(data, out, seeds, base, list(models or paper.TABLE1_MODELS),
                            reference_grids, preset_suffix)
    if name == "grid":
        if not grid:
            raise ExperimentError("grid: give at least one --grid KEY=[V1,V2]")
        return paper.custom_grid(model, data, out, seeds, base, grid)
    if name not in paper.EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; experiments: "
                              f"{', '.join([*paper.EXPERIMENTS, 'grid'])}")
    return paper.EXPERIMENTS[name](data, out, seeds, base)


def summarise(name: str, title: str, out: Path, outcomes: list[RunOutcome]) -> ExperimentResult:
    """Select on validation and write ``summary.md/.csv/.json`` in ``out``."""
    if name == "table1":
        rows = report.best_per_model(outcomes)
        text = report.write_summary(out, title, rows, outcomes, transpose=True)
    else:
        rows = aggregate(outcomes)
        text = report.write_summary(out, title, rows, outcomes)
        if name == "grid" and rows:
            text += f"\nselected on validation {rows[0].metric}: {select_best(rows).label}\n"
    return ExperimentResult(title, out, outcomes, text, rows)


class SweepProgress:
    """One progress view of a sweep: finished / running / failed and the best validation so
    far. A live line on a terminal, one plain line per finished run otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, live: bool | None = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.done = self.failed = self.reused = self.running = 0
        self.best: tuple[float, str, str] | None = None  # value, metric, name
        self.t0 = time.monotonic()
        self._live = None
        if live if live is not None else self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.status(), console=Console(file=self.stream),
                              refresh_per_second=2, transient=False)
            self._live.start()

    def status(self) -> str:
        best = (f"; best valid {self.best[1]} {self.best[0]:.4f} ({self.best[2]})"
                if self.best else "")
        return (f"[{self.done}/{self.total} finished ({self.reused} reused), {self.running} "
                f"running, {self.failed} failed, {time.monotonic() - self.t0:.0f}s{best}]")

    def set_running(self, n: int) -> None:
        self.running = n
        if self._live is not None:
            self._live.update(self.status())

    def __call__(self, o: RunOutcome) -> None:
        if o.error:
            self.failed += 1
            line = f"  failed {o.spec.run_dir}: {o.error}"
        else:
            self.done += 1
            self.reused += o.reused
            m = o.spec.valid_metric
            value = float(o.result["valid"][m])
            if self.best is None or value > self.best[0]:
                self.best = (value, m, o.spec.run_dir.parent.name)
            line = (f"  {'reused' if o.reused else 'done':6s} {o.spec.run_dir}: valid {m} "
                    f"{value:.4f}")
        if self._live is not None:
            self._live.console.print(line)
            self._live.update(self.status())
        else:
            print(f"{line}  {self.status()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def run_experiment(name: str, data: str | Path, out: Path, seeds: Sequence[int],
                   base: dict[str, Any], *, jobs: int = 1, backend: str = "local",
                   ray_options: dict[str, Any] | None = None, plot: bool = False,
                   keep_checkpoints: bool | None = None,
                   stream: TextIO | None = None, tracking_uri: str | None = None,
                   **plan_kw: Any) -> ExperimentResult:
    """Plan, run (finished runs reused, interrupted ones resumed) and summarise.

    With config key ``tracking`` in ``base`` (mlflow or tensorboard) every run is sent to
    the tracker as it trains, and every run of the call, reused ones too, is sent from its
    files when it is done (:class:`mgnm.track.Tracking`; MLflow: one experiment named after
    ``out``, its store ``out/mlflow.db`` unless ``tracking_uri``).

    ``keep_checkpoints`` sets ``keep_checkpoint`` of every run (None: keep an explicit
    ``keep_checkpoint`` of ``base``, else False: a sweep keeps ``best.pt`` and ``result.json``
    of a finished run, not its ``checkpoint.pt``; interrupted runs keep theirs to resume)."""
    base = dict(base)
    if keep_checkpoints is not None:
        base["keep_checkpoint"] = bool(keep_checkpoints)
    base.setdefault("keep_checkpoint", False)
    out = prepare_out(out)
    title, specs = plan(name, data, out, seeds, base, **plan_kw)
    stream = stream or sys.stderr
    print(f"{title}: {len(specs)} runs in {out} ({backend} backend)", file=stream, flush=True)
    progress = SweepProgress(len(specs), stream)
    try:
        outcomes = run_tracked(specs, base.get("tracking"), out, tracking_uri=tracking_uri,
                               push_hint=out, on_done=progress, jobs=jobs, backend=backend,
                               ray_options=ray_options, on_running=progress.set_running)
    finally:
        progress.close()
    result = summarise(name, title, out, outcomes)
    if plot:
        finished = [o.spec.run_dir for o in outcomes if o.result]
        if finished:
            plot_curves(finished, out / "curves.png")
        if name == "sensitivity" and result.rows:
            report.plot_sensitivity(result.rows, out / "sensitivity.png")
    return result
