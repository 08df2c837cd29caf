"""Tracking as a run goes: a trainer :class:`~mgnm.train.trainer.Callback`.

Training never waits for the tracker. The callback hands each update to one background
thread, which sends them in order; the trainer goes on at once. When the tracker fails
(a server that is down or goes away, a full disk) the callback warns once, drops what is
left and the runs carry on: their files hold everything, and ``mgnm track`` sends them later.
At the end of a run it waits for the thread to finish sending, at most ``drain_seconds``.

One :class:`Tracking` serves every run of a command (``train``, ``experiment``, ``tune``,
``benchmark``): it learns each run's directory and config from ``on_start``. It pickles
without its thread and connection (a Ray task gets a copy that connects on its own).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mgnm import runs
from mgnm.errors import MgnmError
from mgnm.track.base import (
    RunOpen,
    Target,
    reason,
    require,
    run_name,
    spec_from_files,
    study_spec,
)
from mgnm.track.runfiles import RunFiles, params, run_key, run_tags
from mgnm.train.trainer import Callback, EpochRecord, Result

KINDS = ("mlflow", "tensorboard")


class TrackingWarning(UserWarning):
    """Tracking stopped; the runs went on."""


def stop_state(error: BaseException) -> tuple[str, str]:
    """How a run that raised ``error`` ended, and a line that says why."""
    if type(error).__name__ == "TrialPruned":  # optuna's, without importing it here
        return "pruned", str(error) or "pruned"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "interrupted"
    return "failed", reason(error)


def make_target(kind: str, uri: str | None, experiment: str) -> Target:
    if kind == "mlflow":
        from mgnm.track.mlflow_target import MlflowTarget

        assert uri is not None
        return MlflowTarget(uri, experiment)
    if kind == "tensorboard":
        from mgnm.track.tensorboard_target import TensorBoardTarget

        return TensorBoardTarget()
    raise MgnmError(f"unknown tracker {kind!r}; trackers: {', '.join(KINDS)}")


class Tracking(Callback):
    """Sends every run it sees to MLflow or TensorBoard as the run trains.

    ``base``: the directory the runs are under (run names are their paths below it; the
    embedded MLflow store is ``base/mlflow.db`` unless ``uri`` is given; the MLflow
    experiment is named after it unless ``experiment`` is). ``push_hint``: the directory to
    name in the warning, for ``mgnm track`` to send later.
    """

    def __init__(self, kind: str, base: str | Path, *, uri: str | None = None,
                 experiment: str | None = None, push_hint: str | Path | None = None,
                 drain_seconds: float = 30.0) -> None:
        if kind not in KINDS:
            raise MgnmError(f"unknown tracker {kind!r}; trackers: {', '.join(KINDS)}")
        require(kind)
        self.kind, self.base = kind, Path(base).absolute()
        self.uri: str | None = None
        self.experiment = experiment or self.base.name or "mgnm"
        self.local = True  # TensorBoard: event files in the run directory
        if kind == "mlflow":
            from mgnm.track.mlflow_target import is_local, resolve

            self.uri, self.experiment = resolve(self.base, uri, experiment)
            self.local = is_local(self.uri)
        self.push_hint = Path(push_hint) if push_hint is not None else self.base
        self.drain_seconds = drain_seconds
        self.parent_key: str | None = None
        self.down = False  # the tracker failed: nothing more is sent
        self._init_runtime()

    # ------------------------------------------------------------------ runtime state
    def _init_runtime(self) -> None:
        self._queue: queue.Queue[tuple[Callable[[], None] | None, bool]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._target: Target | None = None
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("_queue", "_thread", "_lock", "_target", "_handle"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def train_args(self) -> list[str]:
        """``mgnm train`` options that make a run in a subprocess tracked like one here."""
        args = ["--track", self.kind, "--track-base", str(self.base),
                "--track-experiment", self.experiment]
        return args + (["--tracking-uri", self.uri] if self.uri else [])

    def where(self) -> str:
        return make_target(self.kind, self.uri, self.experiment).where() \
            if self._target is None else self._target.where()

    # ------------------------------------------------------------------ the thread
    def _submit(self, fn: Callable[[], None]) -> None:
        if self.down:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="mgnm-tracking",
                                                daemon=True)
                self._thread.start()
            self._queue.put((fn, False))

    def _work(self) -> None:
        while True:
            fn, always = self._queue.get()
            if fn is None:
                return
            if self.down and not always:
                continue
            try:
                fn()
            except Exception as exc:  # the tracker's own errors are of many types
                self._fail(f"{reason(exc)}")

    def _fail(self, reason: str) -> None:
        if self.down:
            return
        self.down = True
        send = f"mgnm track {self.push_hint} --to {self.kind}"
        if self.kind == "mlflow":
            send += f" --tracking-uri {self.uri}"
        warnings.warn(f"tracking to {self.where()} stopped ({reason}); training goes on and "
                      f"its files keep everything: send it later with `{send}`",
                      TrackingWarning, stacklevel=2)

    def _connected(self) -> Target:
        if self._target is None:
            target = make_target(self.kind, self.uri, self.experiment)
            target.connect()
            self._target = target
        return self._target

    def drain(self, stop: bool = True) -> bool:
        """Wait (at most ``drain_seconds``) until everything handed over was sent; with
        ``stop`` the thread then ends (a later update starts a new one)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put((done.set, True))
        if not done.wait(self.drain_seconds):
            self._fail(f"no answer within {self.drain_seconds:g} s")
            return False
        if stop:
            self._queue.put((None, True))
            thread.join(self.drain_seconds)
        return not self.down

    def start(self) -> Tracking:
        """Connect before any run starts. An embedded store is created here, once, and
        waited for: runs that start together in other processes (``--jobs``, Ray) would
        otherwise each create its tables at the same moment and break it."""
        self._submit(self._connected)
        if self.local:
            self.drain(stop=False)
        return self

    # ------------------------------------------------------------------ callback hooks
    def on_start(self, info: dict[str, Any]) -> None:
        run_dir = Path(info["run_dir"]) if info.get("run_dir") else None
        config = dict(info.get("config") or {})
        start = int(info.get("start_epoch", 0))
        spec = RunOpen(key=run_key(run_dir) if run_dir else run_key(f"run-{id(info)}"),
                       name=run_name(run_dir, self.base), run_dir=run_dir,
                       params=params(config), config=config, tags={}, start_epoch=start,
                       parent_key=self.parent_key)

        def open_run() -> None:
            from mgnm.train.provenance import software

            data = None
            if run_dir is not None and (run_dir / runs.DATA_RECORD).is_file():
                from mgnm import storage

                data = storage.read_json(run_dir / runs.DATA_RECORD)
            tags = run_tags(config, info.get("dataset"), data, software())
            self._handle = self._connected().open(dataclasses.replace(spec, tags=tags),
                                                  live=True, fresh=start == 0)

        self._handle = None
        self._submit(open_run)
        if self.local:
            # a store in a file: opening it (creating its tables the first time) is done
            # before the first epoch, which would otherwise share the interpreter with it
            # and record slower seconds
            self.drain(stop=False)

    def on_epoch(self, record: EpochRecord) -> None:
        line = dataclasses.asdict(record)
        self._submit(lambda: self._handle.log_epochs([line]))

    def on_end(self, result: Result) -> None:
        res = result.to_dict()
        self._submit(lambda: self._handle.finish(res, "finished"))
        self.drain()

    def on_abort(self, error: BaseException) -> None:
        state, detail = stop_state(error)
        self._submit(lambda: self._handle.finish(None, state, detail))
        self.drain()

    # ------------------------------------------------------------------ from files
    def sync(self, run_dir: str | Path, state: str | None = None,
             detail: str | None = None) -> None:
        """Send a run from its files (what it lacks in the tracker), in the background:
        a run reused from an earlier call, or trained where no callback saw it."""
        run_dir = Path(run_dir)

        def push() -> None:
            try:
                files = RunFiles.read(run_dir)
            except MgnmError:  # its own error is reported where the run is
                return
            spec = spec_from_files(files, self.base, self.parent_key)
            end = state or ("finished" if files.finished else "unfinished")
            self._connected().push(files, spec, end, detail)

        self._submit(push)

    def open_study(self, study_dir: str | Path) -> None:
        """Make the runs that follow children of a study's run (``mgnm tune``)."""
        spec = study_spec(Path(study_dir))
        self._submit(lambda: self._connected().open_study(spec, live=True))
        self.parent_key = spec.key

    def finish_study(self, summary: dict[str, Any], path: Path | None) -> None:
        key = self.parent_key
        if key is not None:
            self._submit(lambda: self._connected().finish_study(key, summary, path))

    def close(self) -> None:
        self.drain()


def tracking_for(kind: str | None, base: str | Path, *, uri: str | None = None,
                 experiment: str | None = None,
                 push_hint: str | Path | None = None) -> Tracking | None:
    """A :class:`Tracking` for config key ``tracking`` = ``kind``; None when it is unset or
    ``none``."""
    if kind is None or str(kind).lower() == "none":
        return None
    return Tracking(str(kind), base, uri=uri, experiment=experiment, push_hint=push_hint)
