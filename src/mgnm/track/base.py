"""What every tracker does with a run: open it (find it again or create it), log epochs,
finish it; push a run from its files. :mod:`mgnm.track.mlflow_target` and
:mod:`mgnm.track.tensorboard_target` implement it."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mgnm import runs
from mgnm.errors import MgnmError
from mgnm.track.runfiles import RunFiles, params, run_key

#: How a run ended: ``finished`` (result.json written), ``pruned`` (a tuner stopped it),
#: ``failed`` (an error), ``interrupted`` (Ctrl-C, a kill); ``unfinished``: no result.json
#: and nothing else known (in progress, or stopped without a word).
STATES = ("finished", "pruned", "failed", "interrupted", "unfinished")


class MissingTrackExtra(MgnmError):
    """MLflow or TensorBoard is not installed."""


def require(kind: str) -> None:
    """One line naming the extra when the tracker's package (or matplotlib, for the
    learning-curve artefact) is missing."""
    modules = {"mlflow": ("mlflow", "matplotlib"),
               "tensorboard": ("tensorboard", "matplotlib")}[kind]
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            raise MissingTrackExtra(f"tracking with {kind} needs {name}, from the extra "
                                    f"'track': pip install 'mgnm[track]'") from None


def reason(exc: BaseException) -> str:
    """One short line for a tracker's exception: a socket error's own words where there
    are some (MLflow wraps them in a paragraph)."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


@dataclass
class RunOpen:
    """Everything a tracker needs to open (or find again) one run."""

    key: str  # finds the run again: a digest of its directory's path
    name: str
    run_dir: Path | None
    params: dict[str, str]
    config: dict[str, Any]
    tags: dict[str, str]
    start_epoch: int = 0  # epochs the run had completed when this process took it up
    started_ms: int | None = None
    parent_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_name(run_dir: Path | None, base: Path | None) -> str:
    """A run's name in the tracker: its directory relative to the tracked directory
    (``mgnm/seed1``), else the directory's own name."""
    if run_dir is None:
        return "run"
    if base is not None:
        try:
            rel = Path(run_dir).resolve().relative_to(Path(base).resolve())
            if str(rel) != ".":
                return rel.as_posix()
        except ValueError:
            pass
    return Path(run_dir).name


def spec_from_files(files: RunFiles, base: Path | None, parent_key: str | None = None
                    ) -> RunOpen:
    return RunOpen(key=run_key(files.run_dir), name=run_name(files.run_dir, base),
                   run_dir=files.run_dir, params=params(files.config), config=files.config,
                   tags=files.tags(), start_epoch=0, started_ms=files.started_ms(),
                   parent_key=parent_key)


def study_spec(study_dir: Path) -> RunOpen:
    """The run of a tuning study (``mgnm tune``): its trials are its children."""
    study_dir = Path(study_dir).absolute()
    return RunOpen(key=run_key(study_dir, "#study"), name=f"{study_dir.name} (study)",
                   run_dir=None, params={}, config={},
                   tags={"mgnm.kind": "study", "mgnm.study_dir": str(study_dir)},
                   start_epoch=1)


class Handle(Protocol):
    epochs_logged: int
    state: str | None

    def log_epochs(self, records: list[dict[str, Any]],
                   times_ms: list[int] | None = None) -> None: ...

    def finish(self, result: dict[str, Any] | None, state: str, detail: str | None = None,
               ended_ms: int | None = None) -> None: ...


class Target(Protocol):
    kind: str

    def connect(self) -> None: ...

    def where(self) -> str: ...

    def open(self, spec: RunOpen, live: bool, fresh: bool = False) -> Handle: ...

    def push(self, files: RunFiles, spec: RunOpen, state: str, detail: str | None) -> str: ...

    def open_study(self, spec: RunOpen, live: bool) -> None: ...

    def finish_study(self, key: str, summary: dict[str, Any], path: Path | None) -> None: ...


@contextmanager
def curves_png(run_dir: Path | None) -> Iterator[Path | None]:
    """The run's learning curves (``mgnm plot``) as a PNG in a temporary directory, or None
    when the run has no logged epoch."""
    if run_dir is None or not (Path(run_dir) / runs.LOG).is_file():
        yield None
        return
    from mgnm.plots import plot_curves

    with tempfile.TemporaryDirectory(prefix="mgnm-curves-") as tmp:
        out = Path(tmp) / "curves.png"
        try:
            plot_curves([Path(run_dir)], out)
        except MgnmError:  # a log with no epoch yet, a metric missing: no picture
            yield None
            return
        yield out
