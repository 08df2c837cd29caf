"""The local runner: the runs of an experiment in this process, or as ``mgnm train``
subprocesses side by side (``--jobs``); each run resumes from its checkpoint and a finished
one is reused."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mgnm import runs, storage
from mgnm.config import RunConfig, resolve_config
from mgnm.errors import MgnmError
from mgnm.experiments.grid import RunOutcome, RunSpec, finished_result
from mgnm.train.trainer import Callback, Trainer


def with_threads(spec: RunSpec, threads: int) -> RunSpec:
    """``spec`` with config key ``threads`` set, unless the user set it (an execution key:
    the run's directory and identity do not change)."""
    if spec.config.get("threads") is not None:
        return spec
    return dataclasses.replace(spec, config={**spec.config, "threads": int(threads)})


def run_one(spec: RunSpec, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one spec in this process."""
    done = finished_result(spec)
    if done is not None:
        return done
    cfg: RunConfig = resolve_config(spec.config)
    resume = (spec.run_dir / runs.CHECKPOINT).is_file()
    trainer = Trainer(cfg, run_dir=spec.run_dir, callbacks=callbacks)
    return trainer.run(resume=resume).to_dict()


def _run_subprocess(spec: RunSpec, threads: int, train_args: Sequence[str] = ()) -> dict[str, Any]:
    done = finished_result(spec)
    if done is not None:
        return done
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    storage.write_yaml(spec.run_dir.parent / f"seed{spec.seed}.yaml", with_threads(spec, threads).config)
    cmd = [sys.executable, "-m", "mgnm.cli", "train", "-q", *train_args]
    if (spec.run_dir / runs.CHECKPOINT).is_file():
        cmd += ["--resume", str(spec.run_dir)]
    else:
        cmd += ["--config", str(spec.run_dir.parent / f"seed{spec.seed}.yaml"),
                "--out", str(spec.run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(spec.run_dir.parent / f"seed{spec.seed}.log", "a", encoding="utf-8") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = (spec.run_dir.parent / f"seed{spec.seed}.log").read_text().strip().splitlines()
        raise MgnmError(tail[-1].removeprefix("error: ") if tail
                        else f"run failed with status {proc.returncode}")
    return storage.read_json(spec.run_dir / runs.RESULT)


def attempt(spec: RunSpec, fn: Callable[[], dict[str, Any]]) -> RunOutcome:
    """Run ``fn`` for ``spec``; an input or OS error becomes the outcome's one-line reason."""
    try:
        reused = finished_result(spec) is not None
        return RunOutcome(spec, fn(), reused=reused)
    except MgnmError as exc:
        return RunOutcome(spec, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except OSError as exc:
        where = exc.filename or spec.run_dir
        return RunOutcome(spec, None, f"{where}: {exc.strerror or exc}")


def run_all_local(
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    on_done: Callable[[RunOutcome], None] | None = None,
    callbacks: Sequence[Callback] = (),
    on_running: Callable[[int], None] | None = None,
    train_args: Sequence[str] = (),
) -> list[RunOutcome]:
    """Run every spec on this machine; a failing run is recorded, the others go on.

    ``jobs > 1`` runs that many at once in subprocesses, splitting the CPU threads between
    them (``mgnm train`` with ``train_args`` added: what ``callbacks`` would do in this
    process, such as ``--track``). ``on_running`` is told how many runs are in progress
    whenever that changes."""
    lock = threading.Lock()
    running = [0]

    def finish(spec: RunSpec, fn: Callable[[], dict[str, Any]]) -> RunOutcome:
        with lock:
            running[0] += 1
            if on_running:
                on_running(running[0])
        out = attempt(spec, fn)
        with lock:
            running[0] -= 1
            if on_running:
                on_running(running[0])
            if on_done:
                on_done(out)
        return out

    if jobs <= 1:
        return [finish(spec, lambda s=spec: run_one(s, callbacks)) for spec in specs]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(finish, s, lambda s=s: _run_subprocess(s, threads, train_args))
                   for s in specs]
        return [f.result() for f in futures]
