"""Grids and seeds: many runs, each resumable, selected on validation only.

A grid is a list of runs. Each run has a stable name derived from its settings and lives in
``<out>/<name>/``; running an experiment again skips finished runs and resumes interrupted
ones, so a sweep that is killed loses at most the epoch in progress. The winner of a grid
is the setting with the best **validation** metric, averaged over seeds (PROTOCOL.md,
"Model selection"); its test metrics are reported, never used to choose.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgnm.errors import ConfigError, MgnmError
from mgnm.train import io
from mgnm.train.config import RunConfig, resolve_config
from mgnm.train.trainer import Callback, Trainer


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: a flat config and where it lives."""

    name: str  # setting name, shared by the seeds of one grid point
    config: dict[str, Any]  # flat keys, including model, data and seed
    run_dir: Path
    label: str = ""  # the row label in tables (defaults to name)

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 999))


@dataclass
class RunOutcome:
    spec: RunSpec
    result: dict[str, Any] | None
    error: str | None = None


@dataclass
class Selection:
    """A grid point chosen on validation, with per-seed and aggregated metrics."""

    name: str
    label: str
    settings: dict[str, Any]
    valid: dict[str, tuple[float, float]]  # metric -> (mean, std) over seeds
    test: dict[str, tuple[float, float]]
    seeds: list[int]
    seconds_per_epoch: float
    candidates: int = 1
    per_seed: list[dict[str, Any]] = field(default_factory=list)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(str(x) for x in v) if v else "none"
    return str(v)


def setting_name(model: str, settings: dict[str, Any]) -> str:
    """A readable, filesystem-safe name: ``mgnm`` or ``mgnm_ddr_weight=0.001_alpha=0``."""
    parts = [model] + [f"{k}={_fmt_value(v)}" for k, v in settings.items()]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{key: [values]}`` (an empty grid is one empty setting)."""
    if not grid:
        return [{}]
    for k, v in grid.items():
        if not isinstance(v, (list, tuple)) or not v:
            raise ConfigError(f"grid key {k!r}: expected a non-empty list of values, got {v!r}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def plan_runs(
    model: str,
    base: dict[str, Any],
    settings: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    out: Path,
    labels: Sequence[str] | None = None,
) -> list[RunSpec]:
    """Run specs for every setting x seed; every config is validated before anything runs."""
    specs = []
    for k, s in enumerate(settings):
        name = setting_name(model, s)
        for seed in seeds:
            flat = {**base, **s, "model": model, "seed": int(seed)}
            resolve_config(flat)  # fail early, naming the key, before hours of training
            specs.append(RunSpec(name, flat, out / name / f"seed{seed}",
                                 labels[k] if labels else name))
    return specs


def _finished(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    if path.is_file():
        try:
            return io.read_json(path)
        except MgnmError:
            return None
    return None


def run_one(spec: RunSpec, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Run (or resume, or skip when finished) one spec in this process."""
    done = _finished(spec.run_dir)
    if done is not None:
        return done
    cfg: RunConfig = resolve_config(spec.config)
    resume = (spec.run_dir / "checkpoint.pt").is_file()
    trainer = Trainer(cfg, run_dir=spec.run_dir, callbacks=callbacks)
    return trainer.run(resume=resume).to_dict()


def _run_subprocess(spec: RunSpec, threads: int) -> dict[str, Any]:
    done = _finished(spec.run_dir)
    if done is not None:
        return done
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    io.write_yaml(spec.run_dir.parent / f"seed{spec.seed}.yaml", spec.config)
    cmd = [sys.executable, "-m", "mgnm.cli", "train", "-q"]
    if (spec.run_dir / "checkpoint.pt").is_file():
        cmd += ["--resume", str(spec.run_dir)]
    else:
        cmd += ["--config", str(spec.run_dir.parent / f"seed{spec.seed}.yaml"),
                "--out", str(spec.run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(spec.run_dir.parent / f"seed{spec.seed}.log", "a", encoding="utf-8") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = (spec.run_dir.parent / f"seed{spec.seed}.log").read_text().strip().splitlines()
        raise MgnmError(tail[-1] if tail else f"run failed with status {proc.returncode}")
    return io.read_json(spec.run_dir / "result.json")


def run_all(
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    on_done: Callable[[RunOutcome], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> list[RunOutcome]:
    """Run every spec; ``jobs > 1`` runs that many at once in subprocesses, splitting the
    CPU threads between them. A failing run is recorded, the others go on."""
    outcomes: list[RunOutcome] = []

    def finish(spec: RunSpec, fn: Callable[[], dict[str, Any]]) -> RunOutcome:
        try:
            out = RunOutcome(spec, fn())
        except MgnmError as exc:
            out = RunOutcome(spec, None, str(exc))
        if on_done:
            on_done(out)
        return out

    if jobs <= 1:
        for spec in specs:
            outcomes.append(finish(spec, lambda s=spec: run_one(s, callbacks)))
        return outcomes
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(finish, s, lambda s=s: _run_subprocess(s, threads)) for s in specs]
        outcomes = [f.result() for f in futures]
    return outcomes


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def aggregate(outcomes: Sequence[RunOutcome], metric: str = "recall@20") -> list[Selection]:
    """Group finished runs by setting and average their metrics over seeds."""
    groups: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        if o.result is not None:
            groups.setdefault(o.spec.name, []).append(o)
    rows = []
    for name, group in groups.items():
        res = [o.result for o in group]
        keys = res[0]["test"].keys()
        base_model = group[0].spec.config["model"]
        settings = {k: v for k, v in group[0].spec.config.items()
                    if k not in ("model", "data", "seed")}
        rows.append(Selection(
            name=name, label=group[0].spec.label, settings={"model": base_model, **settings},
            valid={k: _mean_std([r["valid"][k] for r in res]) for k in res[0]["valid"]},
            test={k: _mean_std([r["test"][k] for r in res]) for k in keys},
            seeds=[o.spec.seed for o in group],
            seconds_per_epoch=float(np.mean([r["train_seconds_per_epoch"] for r in res])),
            per_seed=res,
        ))
    return rows


def select_best(rows: Sequence[Selection], metric: str = "recall@20") -> Selection:
    """The setting with the best mean **validation** metric (ties: the first)."""
    if not rows:
        raise MgnmError("no finished run to select from")
    best = max(rows, key=lambda r: r.valid[metric][0])
    best.candidates = len(rows)
    return best
