"""``mgnm track``: send finished (or interrupted) runs to a tracker from their files.

Each path is a run directory or a directory searched for them (an experiment, a tuning
search, any folder of runs). Runs are found again by their directory, so pushing twice
sends nothing the second time, and a run that went on since gets only what it lacks.
A tuning search's trials become child runs of its study's run, with their pruning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgnm import runs, storage
from mgnm.errors import MgnmError
from mgnm.track.base import reason, require, spec_from_files, study_spec
from mgnm.track.live import KINDS, make_target
from mgnm.track.runfiles import RunFiles, find_run_dirs, is_tune_dir

#: Optuna's trial states (as ``tune.json`` holds them) as run states.
TRIAL_STATES = {"PRUNED": "pruned", "FAIL": "failed", "COMPLETE": "finished"}


class TrackError(MgnmError):
    """Nothing to push, or the tracker cannot be reached."""


@dataclass
class PushReport:
    where: str
    base: Path  # the folder run names are relative to
    uri: str | None  # mlflow: the store or server
    counts: dict[str, int] = field(default_factory=lambda: {"new": 0, "updated": 0,
                                                            "unchanged": 0, "failed": 0})
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        n = sum(c.values())
        return (f"{n} run{'s' if n != 1 else ''} to {self.where}: {c['new']} new, "
                f"{c['updated']} updated, {c['unchanged']} unchanged, {c['failed']} failed")


def tracked_base(paths: list[Path]) -> Path:
    """The directory the runs are named below: the common folder of the given folders
    (a run directory counts as its parent)."""
    dirs = [p.parent if (p / runs.CONFIG).is_file() else p for p in paths]
    return Path(os.path.commonpath([str(d.absolute()) for d in dirs]))


def study_of(run_dir: Path) -> Path | None:
    """The tuning search a run is a trial of (``<search>/trials/.../<run>``), if any."""
    for p in run_dir.absolute().parents:
        if p.name == "trials" and is_tune_dir(p.parent):
            return p.parent
    return None


def _trial_states(study: Path) -> dict[str, tuple[str, str | None]]:
    """``run_dir -> (state, detail)`` from a search's ``tune.json``; a run tried in several
    trials takes the most advanced state (finished, then pruned, then failed)."""
    try:
        summary = storage.read_json(study / "tune.json")
    except MgnmError:
        return {}
    rank = {"finished": 3, "pruned": 2, "failed": 1}
    out: dict[str, tuple[str, str | None]] = {}
    for t in summary.get("trials") or []:
        state = TRIAL_STATES.get(str(t.get("state")))
        where = t.get("run_dir")
        if state is None or not where:
            continue
        key = str(Path(where).absolute())
        if key not in out or rank[state] > rank[out[key][0]]:
            out[key] = (state, t.get("detail") or t.get("error"))
    return out


def push(paths: list[str | Path], to: str, *, uri: str | None = None,
         experiment: str | None = None) -> PushReport:
    """Send every run at or under ``paths`` to ``to`` (mlflow or tensorboard)."""
    if to not in KINDS:
        raise TrackError(f"unknown tracker {to!r}; trackers: {', '.join(KINDS)}")
    roots = [Path(p) for p in paths]
    for p in roots:
        if not p.is_dir():
            raise TrackError(f"{p}: no such directory")
    runs: list[Path] = []
    for p in roots:
        found = list(find_run_dirs(p))
        if not found:
            raise TrackError(f"{p}: no run directory (config.yaml with log.jsonl) in it")
        runs += [r for r in found if r not in runs]
    require(to)
    base = tracked_base(roots)
    name = experiment or base.name or "mgnm"
    if to == "mlflow":
        from mgnm.track.mlflow_target import resolve

        uri, name = resolve(base, uri, experiment)
    target = make_target(to, uri, name)
    report = PushReport(target.where(), base, uri)
    _send(report, "connecting", target.connect)
    studies: dict[Path, dict[str, tuple[str, str | None]]] = {}
    for run in runs:
        study = study_of(run)
        if study is not None and study not in studies:
            studies[study] = _trial_states(study)
            _send(report, str(study), lambda s=study: target.open_study(study_spec(s), False))
        try:
            files = RunFiles.read(run)
        except MgnmError as exc:
            report.counts["failed"] += 1
            report.lines.append(f"failed    {run}: {exc}")
            continue
        state, detail = "finished" if files.finished else "unfinished", None
        if study is not None and not files.finished:
            state, detail = studies[study].get(str(run.absolute()), (state, None))
        spec = spec_from_files(files, base, study_spec(study).key if study else None)
        try:
            outcome = _send(report, str(run), lambda f=files, s=spec, st=state, d=detail:
                            target.push(f, s, st, d))
        except TrackError:
            raise
        except MgnmError as exc:  # this run's files or directory (an unwritable folder)
            report.counts["failed"] += 1
            report.lines.append(f"failed    {run}: {exc}")
            continue
        report.counts[outcome] += 1
        report.lines.append(f"{outcome:9s} {run}" + (f" ({state})" if state != "finished"
                                                      else ""))
    for study in studies:
        summary = _read_summary(study)
        if summary is not None:
            _send(report, str(study), lambda s=study, m=summary: target.finish_study(
                study_spec(s).key, m, s / "tune.json"))
    return report


def _read_summary(study: Path) -> dict[str, Any] | None:
    try:
        return storage.read_json(study / "tune.json")
    except MgnmError:
        return None


def _send(report: PushReport, what: str, fn: Any) -> Any:
    """Run one tracker call; a tracker failure stops the push with one line."""
    try:
        return fn()
    except MgnmError:
        raise
    except Exception as exc:  # the tracker's own errors are of many types
        raise TrackError(f"{what}: sending to {report.where} failed ({reason(exc)})") from None
