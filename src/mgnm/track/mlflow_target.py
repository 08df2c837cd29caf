"""MLflow: one MLflow run per run directory, found again by the tag ``mgnm.run_key``.

The run's tags ``mgnm.epochs_logged`` and ``mgnm.state`` say what it has received, so
sending a run again (live after a resume, or ``mgnm track`` after the fact) adds only what
is missing. Only :class:`mlflow.tracking.MlflowClient` is used: no process-wide active run
or tracking URI is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mgnm import runs
from mgnm.errors import MgnmError
from mgnm.track.base import RunOpen, curves_png
from mgnm.track.runfiles import RunFiles, end_metrics, epoch_metrics

STATUS = {"finished": "FINISHED", "pruned": "KILLED", "interrupted": "KILLED",
          "failed": "FAILED"}
KEY_TAG, EPOCHS_TAG, STATE_TAG = "mgnm.run_key", "mgnm.epochs_logged", "mgnm.state"
BATCH = 900  # metrics per request (MLflow takes at most 1,000 entities)


def default_uri(base: Path) -> str:
    """The embedded store of a directory: ``sqlite:///<base>/mlflow.db``."""
    return f"sqlite:///{(Path(base) / 'mlflow.db').resolve()}"


def resolve(base: Path, uri: str | None, experiment: str | None) -> tuple[str, str]:
    """The store and experiment of runs under ``base``: as given, else MLflow's own
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME``, else ``base/mlflow.db`` and the
    name of ``base``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(base)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or Path(base).name or "mgnm"
    return uri, name


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:////") else \
        Path(uri.removeprefix("sqlite://"))


def is_local(uri: str) -> bool:
    """A store in a file on this machine (nothing to reach over a network)."""
    return sqlite_path(uri) is not None or urlparse(uri).scheme in ("", "file")


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO lines ("Creating initial MLflow database tables...") held back while
    a store is opened; its logger's level is put back after."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowTarget:
    kind = "mlflow"

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self.client: Any = None
        self.experiment_id: str | None = None
        self._ids: dict[str, str] = {}  # run key -> MLflow run id, for parents

    def where(self) -> str:
        return f"MLflow at {self.uri}, experiment {self.experiment!r}"

    def connect(self) -> None:
        if self.client is not None:
            return
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        db = sqlite_path(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_mlflow():
            client = MlflowClient(tracking_uri=self.uri)
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                # an embedded store keeps its artefacts beside its file, not in the cwd
                where = str(db.parent / "mlartifacts") if db is not None else None
                try:
                    client.create_experiment(self.experiment, artifact_location=where)
                except MlflowException:  # created by another process meanwhile
                    pass
                exp = client.get_experiment_by_name(self.experiment)
        if exp is None or exp.lifecycle_stage != "active":
            raise MgnmError(f"{self.uri}: MLflow experiment {self.experiment!r} is deleted; "
                            f"restore it in MLflow or choose another name")
        self.client, self.experiment_id = client, exp.experiment_id

    def find(self, key: str) -> Any:
        runs = self.client.search_runs([self.experiment_id],
                                       filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                       max_results=1)
        return runs[0] if runs else None

    def open(self, spec: RunOpen, live: bool, fresh: bool = False) -> MlflowRun:
        """Find the run of ``spec.key`` or create it. An MLflow run older than the run
        directory's ``config.yaml`` (the directory was trained again from scratch), or any
        when ``fresh``, is set aside (its key tag marked superseded) and a new one made."""
        run = self.find(spec.key)
        if run is not None and (fresh or (spec.started_ms is not None
                                          and spec.started_ms > run.info.start_time + 1000)):
            self.client.set_tag(run.info.run_id, KEY_TAG, f"{spec.key}:superseded")
            run = None
        tags = {**spec.tags, KEY_TAG: spec.key}
        if spec.run_dir is not None:
            tags["mgnm.run_dir"] = str(Path(spec.run_dir).resolve())
        if spec.parent_key is not None:
            parent = self._ids.get(spec.parent_key) or getattr(
                getattr(self.find(spec.parent_key), "info", None), "run_id", None)
            if parent:
                tags["mlflow.parentRunId"] = parent
        if run is None:
            run = self.client.create_run(self.experiment_id, start_time=spec.started_ms,
                                         tags=tags, run_name=spec.name)
            have_params: dict[str, str] = {}
            have_tags: dict[str, str] = {}
        else:
            have_params, have_tags = dict(run.data.params), dict(run.data.tags)
        handle = MlflowRun(self, run.info.run_id, spec.run_dir,
                           int(have_tags.get(EPOCHS_TAG, 0)), have_tags.get(STATE_TAG),
                           created=not have_tags)
        self._ids[spec.key] = handle.run_id
        # params cannot change in MLflow: send the missing ones (a resumed run may differ
        # in execution keys such as threads; the first value stays)
        from mlflow.entities import Param, RunTag

        new_params = [Param(k, v) for k, v in spec.params.items() if k not in have_params]
        new_tags = [RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
        for i in range(0, max(len(new_params), len(new_tags)), 100):
            self.client.log_batch(handle.run_id, params=new_params[i:i + 100],
                                  tags=new_tags[i:i + 100])
        if live and run.info.status != "RUNNING":  # taken up again (a resume, a new call)
            self.client.update_run(handle.run_id, status="RUNNING")
            self.client.set_tag(handle.run_id, STATE_TAG, "running")
            handle.state = "running"
        return handle

    def push(self, files: RunFiles, spec: RunOpen, state: str, detail: str | None) -> str:
        handle = self.open(spec, live=False)
        if handle.epochs_logged > len(files.epochs):  # trained again since: start over
            handle = self.open(spec, live=False, fresh=True)
        before = (handle.epochs_logged, handle.state)
        handle.log_epochs(files.epochs, files.epoch_times_ms())
        if state != "unfinished":
            handle.finish(files.result, state, detail, files.ended_ms())
        if handle.created:
            return "new"
        return "unchanged" if (handle.epochs_logged, handle.state) == before else "updated"

    def open_study(self, spec: RunOpen, live: bool) -> None:
        self.open(spec, live=live)

    def finish_study(self, key: str, summary: dict[str, Any], path: Path | None) -> None:
        """A tuning study's run: its trial counts and best trial (tags), the best trial's
        metrics, ``tune.json`` as an artefact; nothing when it already says all that."""
        from mlflow.entities import Metric, RunTag

        run = self.find(key)
        if run is None:
            return
        tags = {f"trials_{k}": str(v) for k, v in (summary.get("counts") or {}).items()}
        best = summary.get("best")
        if best:
            tags["best_trial"] = str(best.get("number"))
        have = run.data.tags
        if have.get(STATE_TAG) == "finished" and all(have.get(k) == v for k, v in tags.items()):
            return
        rid, now, metrics = run.info.run_id, _now_ms(), []
        for split in ("valid", "test"):
            metrics += [Metric(f"best_{split}/{k.replace('@', '_at_')}", float(v), now, 0)
                        for k, v in ((best or {}).get(split) or {}).items()]
        self.client.log_batch(rid, metrics=metrics,
                              tags=[RunTag(k, v) for k, v in tags.items()])
        if path is not None and path.is_file():
            self.client.log_artifact(rid, str(path))
        self.client.set_tag(rid, STATE_TAG, "finished")
        self.client.set_terminated(rid, "FINISHED")


class MlflowRun:
    """One MLflow run being written."""

    def __init__(self, target: MlflowTarget, run_id: str, run_dir: Path | None,
                 epochs_logged: int, state: str | None, created: bool) -> None:
        self.target, self.run_id, self.run_dir = target, run_id, run_dir
        self.epochs_logged, self.state, self.created = epochs_logged, state, created

    def log_epochs(self, records: list[dict[str, Any]],
                   times_ms: list[int] | None = None) -> None:
        """Send the records of epochs not sent yet, stamped ``times_ms`` (default: now)."""
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        stamped = [(r, t) for r, t in zip(records, times_ms or [now] * len(records), strict=True)
                   if int(r["epoch"]) > self.epochs_logged]
        new = [r for r, _ in stamped]
        chunk: list[Any] = []
        for i, (rec, when) in enumerate(stamped):
            chunk += [Metric(k, v, when, int(rec["epoch"]))
                      for k, v in epoch_metrics(rec).items()]
            if i == len(new) - 1 or len(chunk) + len(epoch_metrics(new[i + 1])) > BATCH:
                # the metrics and the count that says they arrived, in one request
                self.target.client.log_batch(self.run_id, metrics=chunk,
                                             tags=[RunTag(EPOCHS_TAG, str(rec["epoch"]))])
                self.epochs_logged, chunk = int(rec["epoch"]), []

    def finish(self, result: dict[str, Any] | None, state: str, detail: str | None = None,
               ended_ms: int | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        if self.state == state or self.state == "finished":
            return
        client = self.target.client
        tags = [RunTag(STATE_TAG, state)]
        if detail:
            tags.append(RunTag("mgnm.stopped", detail[:500]))
        if result is not None:
            step, now = int(result["best_epoch"]), _now_ms()
            metrics = [Metric(k, v, now, step) for k, v in end_metrics(result).items()]
            tags += [RunTag("best_epoch", str(result["best_epoch"])),
                     RunTag("epochs_run", str(result["epochs_run"])),
                     RunTag("stopped_early", str(result["stopped_early"]).lower())]
            if result.get("device"):
                tags.append(RunTag("device", str(result["device"])))
            client.log_batch(self.run_id, metrics=metrics)
            if self.run_dir is not None:
                for name in (runs.RESULT, runs.CONFIG):
                    if (Path(self.run_dir) / name).is_file():
                        client.log_artifact(self.run_id, str(Path(self.run_dir) / name))
                with curves_png(self.run_dir) as png:
                    if png is not None:
                        client.log_artifact(self.run_id, str(png))
        client.log_batch(self.run_id, tags=tags)
        client.set_terminated(self.run_id, STATUS[state], end_time=ended_ms)
        self.state = state
