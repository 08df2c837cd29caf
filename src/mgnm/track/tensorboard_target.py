"""TensorBoard: event files in the run directory (``<run>/tensorboard/``), written with
:class:`torch.utils.tensorboard.SummaryWriter`; at the end the run's config and final
metrics as an hparams session, so ``tensorboard --logdir EXPERIMENT_DIR`` compares a sweep
in its HPARAMS view.

A push rewrites a run's event directory from its files (into a temporary sibling, then
renamed into place), unless ``tensorboard/mgnm.json`` says it already holds every epoch and
the same end: pushing twice writes nothing the second time.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mgnm import storage
from mgnm.errors import StorageError, os_error_message
from mgnm.track.base import RunOpen
from mgnm.track.runfiles import RunFiles, end_metrics, epoch_metrics, metric_key

EVENTS_DIR, MARKER = "tensorboard", "mgnm.json"


def _hparam(value: Any) -> Any:
    """TensorBoard takes numbers, strings and booleans as hyper-parameters."""
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value)


class TensorBoardTarget:
    kind = "tensorboard"

    def where(self) -> str:
        return "TensorBoard (event files in each run directory)"

    def connect(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    def open(self, spec: RunOpen, live: bool, fresh: bool = False) -> TensorBoardRun:
        if spec.run_dir is None:
            raise StorageError("TensorBoard tracking needs a run directory")
        events = Path(spec.run_dir) / EVENTS_DIR
        if fresh and events.exists():  # the run starts over: so do its curves
            _remove_tree(events)
        # a resumed run hides what an earlier process wrote after its checkpoint
        purge = spec.start_epoch + 1 if spec.start_epoch > 0 else None
        return TensorBoardRun(events, spec, purge)

    def push(self, files: RunFiles, spec: RunOpen, state: str, detail: str | None) -> str:
        events = files.run_dir / EVENTS_DIR
        want = {"epochs": len(files.epochs), "state": state}
        if _read_marker(events) == want:
            return "unchanged"
        tmp = files.run_dir / f".{EVENTS_DIR}-{os.getpid()}.tmp"
        if tmp.exists():
            _remove_tree(tmp)
        run = TensorBoardRun(tmp, spec, None)
        run.log_epochs(files.epochs, files.epoch_times_ms())
        if state == "unfinished":
            run.close(want)
        else:
            run.finish(files.result, state, detail, marker=want)
        existed = events.exists()
        old = files.run_dir / f".{EVENTS_DIR}-{os.getpid()}.old"
        try:
            if existed:
                os.replace(events, old)
            os.replace(tmp, events)
        except OSError as exc:
            raise StorageError(os_error_message(events, exc)) from None
        if existed:
            _remove_tree(old)
        return "updated" if existed else "new"

    def open_study(self, spec: RunOpen, live: bool) -> None:
        """TensorBoard has no parent runs: a study is its trials' hparams sessions."""

    def finish_study(self, key: str, summary: dict[str, Any], path: Path | None) -> None:
        """Nothing to do (see :meth:`open_study`)."""


def _read_marker(events: Path) -> dict[str, Any] | None:
    try:
        return json.loads((events / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise StorageError(os_error_message(path, exc, "cannot remove")) from None


class TensorBoardRun:
    def __init__(self, log_dir: Path, spec: RunOpen, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        try:
            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        except OSError as exc:
            raise StorageError(os_error_message(log_dir, exc)) from None
        self.log_dir, self.spec = Path(log_dir), spec
        self.epochs_logged, self.state = spec.start_epoch, None
        self.created = True

    def log_epochs(self, records: list[dict[str, Any]],
                   times_ms: list[int] | None = None) -> None:
        for i, rec in enumerate(records):
            if int(rec["epoch"]) <= self.epochs_logged:
                continue
            wall = times_ms[i] / 1000 if times_ms else None
            for k, v in epoch_metrics(rec).items():
                self.writer.add_scalar(k, v, int(rec["epoch"]), walltime=wall)
            self.epochs_logged = int(rec["epoch"])
        self.writer.flush()

    def finish(self, result: dict[str, Any] | None, state: str, detail: str | None = None,
               ended_ms: int | None = None, marker: dict[str, Any] | None = None) -> None:
        from torch.utils.tensorboard.summary import hparams

        chosen = metric_key(str(self.spec.config.get("valid_metric", "recall@20")))
        # the columns of the HPARAMS view: TensorBoard reads each one's last scalar value
        metrics: dict[str, float] = {f"valid/{chosen}": 0.0} if self.epochs_logged else {}
        if result is not None:
            step = int(result["best_epoch"])
            for k, v in end_metrics(result).items():
                self.writer.add_scalar(k, v, step)
            metrics.update({k: v for k, v in end_metrics(result).items()
                            if k.startswith("test/") or k == f"best_valid/{chosen}"})
        hp = {k: _hparam(v) for k, v in self.spec.config.items()}
        hp["state"] = state
        for summary in hparams(hp, metrics):
            self.writer.file_writer.add_summary(summary)
        self.state = state
        self.close(marker or {"epochs": self.epochs_logged, "state": state})

    def close(self, marker: dict[str, Any]) -> None:
        self.writer.close()
        storage.atomic_write_text(self.log_dir / MARKER, json.dumps(marker) + "\n")
