"""Grids and seeds: many runs, each resumable, selected on validation only.

A grid is a list of runs. Each run is keyed by its whole resolved configuration (data
directory as an absolute path, model, every training and model key, seed): it lives in
``<out>/<name>-<hash>/seed<N>/``, where ``name`` is readable and ``hash`` is a digest of the
resolved config without the seed. Running an experiment again with the same config skips
finished runs and resumes interrupted ones, so a sweep that is killed loses at most the
epoch in progress; any changed key (``--set``, ``--config``, ``--preset``, a changed default)
is a new directory, never a stale result. The winner of a grid is the setting with the best
**validation** ``valid_metric``, averaged over seeds (PROTOCOL.md, "Model selection"); its
test metrics are reported, never used to choose.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgnm import runs, storage
from mgnm.config import resolve_config
from mgnm.errors import ConfigError, MgnmError

#: Keys that say how a run is executed, not what it computes; they are not part of its key.
EXECUTION_KEYS = frozenset({"threads", "keep_checkpoint", "tracking"})


class ExperimentError(MgnmError):
    """An experiment cannot run or did not finish (failed runs, unwritable directory)."""


def run_identity(flat: dict[str, Any]) -> dict[str, Any]:
    """The resolved flat config that keys a run: every key with its default filled in, the
    data directory absolute, the execution-only keys (:data:`EXECUTION_KEYS`) left out."""
    ident = resolve_config(flat).flat()
    if ident.get("data") is not None:
        ident["data"] = str(Path(ident["data"]).resolve())
    return {k: v for k, v in ident.items() if k not in EXECUTION_KEYS}


def config_digest(identity: dict[str, Any]) -> str:
    """A short, stable digest of a resolved config (sorted JSON, SHA-256, 10 hex digits)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: a flat config and where it lives."""

    name: str  # setting name, shared by the seeds of one grid point
    config: dict[str, Any]  # flat keys, including model, data and seed
    run_dir: Path
    label: str = ""  # the row label in tables (defaults to name)
    valid_metric: str = "recall@20"  # the resolved config's selection metric

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 999))


@dataclass
class RunOutcome:
    spec: RunSpec
    result: dict[str, Any] | None
    error: str | None = None
    reused: bool = False  # finished before with the same config; nothing was trained


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
    metric: str = "recall@20"  # the validation metric this setting is selected on
    candidates: int = 1
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)  # the seeds' run directories


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
    """Run specs for every setting x seed; every config is validated before anything runs.

    A setting's directory is ``<out>/<name>-<digest>`` with the digest of its resolved config
    (without the seed), so a changed key never lands in an old run's directory."""
    specs = []
    out = Path(out).absolute()
    for k, s in enumerate(settings):
        name = setting_name(model, s)
        for seed in seeds:
            flat = {**base, **s, "model": model, "seed": int(seed)}
            if flat.get("data") is not None:
                flat["data"] = str(Path(flat["data"]).resolve())
            # fail early, naming the key, before hours of training
            ident = run_identity(flat)
            digest = config_digest({k2: v for k2, v in ident.items() if k2 != "seed"})
            specs.append(RunSpec(name, flat, out / f"{name}-{digest}" / f"seed{seed}",
                                 labels[k] if labels else name, ident["valid_metric"]))
    return specs


def check_run_dir(spec: RunSpec) -> None:
    """Refuse a run directory whose ``config.yaml`` is of another config than ``spec``'s."""
    path = spec.run_dir / runs.CONFIG
    if not path.is_file():
        return
    try:
        import yaml

        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        theirs = run_identity(saved)
    except (OSError, ValueError, TypeError, AttributeError, MgnmError) as exc:
        raise ExperimentError(f"{path}: unreadable run config ({str(exc).splitlines()[0]}); "
                              f"move {spec.run_dir} away to rerun it") from None
    ours = run_identity(spec.config)
    diff = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if diff:
        k = diff[0]
        raise ExperimentError(f"{spec.run_dir} holds a run of another config (key {k!r}: "
                              f"{theirs.get(k)!r} there, {ours.get(k)!r} here); move it away")


def finished_result(spec: RunSpec) -> dict[str, Any] | None:
    """The result of the run in ``spec.run_dir`` when it finished with ``spec``'s config."""
    check_run_dir(spec)
    path = spec.run_dir / runs.RESULT
    if path.is_file():
        try:
            return storage.read_json(path)
        except MgnmError:
            return None
    return None


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def aggregate(outcomes: Sequence[RunOutcome]) -> list[Selection]:
    """Group finished runs by setting and average their metrics over seeds; each row is
    selected on its runs' ``valid_metric``."""
    groups: dict[str, list[RunOutcome]] = {}
    for o in outcomes:
        if o.result is not None:
            groups.setdefault(o.spec.run_dir.parent.name if o.spec.run_dir else o.spec.name,
                          []).append(o)
    rows = []
    for group in groups.values():
        res = [o.result for o in group]
        keys = res[0]["test"].keys()
        base_model = group[0].spec.config["model"]
        settings = {k: v for k, v in group[0].spec.config.items()
                    if k not in ("model", "data", "seed")}
        rows.append(Selection(
            name=group[0].spec.name, label=group[0].spec.label, settings={"model": base_model, **settings},
            valid={k: _mean_std([r["valid"][k] for r in res]) for k in res[0]["valid"]},
            test={k: _mean_std([r["test"][k] for r in res]) for k in keys},
            seeds=[o.spec.seed for o in group],
            seconds_per_epoch=float(np.mean([r["train_seconds_per_epoch"] for r in res])),
            metric=group[0].spec.valid_metric, per_seed=res,
            run_dirs=[str(o.spec.run_dir) for o in group],
        ))
    return rows


def select_best(rows: Sequence[Selection]) -> Selection:
    """The setting with the best mean **validation** metric (ties: the first); every row
    must be selected on the same ``valid_metric``."""
    if not rows:
        raise ExperimentError("no finished run to select from")
    metrics = sorted({r.metric for r in rows})
    if len(metrics) > 1:
        raise ExperimentError(f"cannot compare settings selected on different validation "
                              f"metrics ({', '.join(metrics)}); give one valid_metric")
    best = max(rows, key=lambda r: r.valid[r.metric][0])
    best.candidates = len(rows)
    return best
