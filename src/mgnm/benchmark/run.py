"""One benchmark end to end: the same search budget for every model, then seeds.

For each model, in the order given:

1. an Optuna study over the model's shipped space (:mod:`mgnm.tune.spaces`) with
   :func:`mgnm.tune.search.tune`: the same number of trials, maximum epochs, patience,
   pruner, sampler and sampler seed for every model; the chosen trial is the completed one
   with the best **validation** ``valid_metric`` (ties: the first);
2. the chosen configuration trained once per seed with the experiment runner
   (:func:`mgnm.experiments.runners.run_all`), each run keyed by its resolved config.

Everything lives under ``out``: ``tune/<model>/`` (``study.db`` and the trials' runs) and
``runs/<model>/`` (the seed runs). Running the same command again continues the studies
and reuses finished runs; a killed call resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mgnm.config import resolve_config
from mgnm.errors import ConfigError
from mgnm.experiments.grid import RunOutcome, Selection, aggregate, plan_runs
from mgnm.experiments.report import table_metrics
from mgnm.experiments.runners import run_tracked
from mgnm.experiments.sweep import prepare_out
from mgnm.models import MODELS, get_model_class
from mgnm.runs import read_log
from mgnm.tune.search import PRUNERS, SAMPLERS, require_optuna, tune
from mgnm.tune.space import dataset_modalities
from mgnm.tune.spaces import space_path

#: config keys the budget sets, the same for every model (given as options, never --set)
BUDGET_KEYS = {"epochs": "--max-epochs", "patience": "--patience", "seed": "--tune-seed"}


@dataclass(frozen=True)
class Budget:
    """What every model gets: the search and the seed runs of its chosen configuration."""

    trials: int
    max_epochs: int = 1000
    patience: int = 20
    seeds: tuple[int, ...] = (1, 2, 3)
    pruner: str = "median"
    sampler: str = "tpe"
    tune_seed: int = 999
    warmup_epochs: int = 5
    startup_trials: int = 5

    def check(self) -> None:
        if self.trials < 1 or self.max_epochs < 1 or self.patience < 0 or not self.seeds:
            raise ConfigError("the budget needs trials >= 1, max epochs >= 1, patience >= 0 "
                              "and at least one seed")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; pruners: {', '.join(PRUNERS)}")
        if self.sampler not in SAMPLERS or self.sampler == "grid":
            raise ConfigError(f"sampler {self.sampler!r}: a benchmark samples (tpe or random); "
                              f"a grid would give models different trial counts")

    def pruning_text(self) -> str:
        if self.pruner == "none":
            return "no pruning"
        if self.pruner == "median":
            return (f"median pruning (a trial below the median of earlier trials at the same "
                    f"epoch stops, after {self.startup_trials} trials have finished and never "
                    f"before epoch {self.warmup_epochs + 1})")
        return (f"asynchronous successive halving (ASHA) pruning, minimum "
                f"{max(1, self.warmup_epochs)} epochs")

    def text(self, metric: str) -> str:
        """The budget and the selection rule, in words (printed above every table)."""
        seeds = ", ".join(map(str, self.seeds))
        return (f"Budget, the same for every model: {self.trials} trials of Optuna's "
                f"{self.sampler.upper() if self.sampler == 'tpe' else self.sampler} sampler "
                f"(seed {self.tune_seed}) over the model's search space (`mgnm spaces "
                f"MODEL`), each trial at most {self.max_epochs} epochs with early stopping "
                f"after {self.patience} epochs without a validation improvement, "
                f"{self.pruning_text()}. Selection: the completed trial with the best "
                f"validation {metric}; the test split is not read while choosing. The chosen "
                f"configuration is then trained with seeds {seeds}; test figures are the mean "
                f"± std over those seeds.")


@dataclass
class ModelOutcome:
    """One model's search and seed runs."""

    model: str
    chosen: dict[str, Any] | None  # the chosen trial's values (None: no trial completed)
    best_trial: int | None
    best_valid: float | None  # the chosen trial's validation figure
    trials: dict[str, int]  # complete, pruned, failed, total, new (this call)
    outcomes: list[RunOutcome] = field(default_factory=list)
    row: Selection | None = None
    compute_seconds: float = 0.0  # every epoch of every trial and seed run, train + eval
    study: str = ""

    @property
    def run_dirs(self) -> list[Path]:
        return [o.spec.run_dir for o in self.outcomes if o.result is not None]

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.error]


@dataclass
class BenchmarkResult:
    data: str
    out: Path
    budget: Budget
    metric: str
    models: list[ModelOutcome]
    wall_seconds: float  # this call
    marks: dict[str, dict[str, bool]] | None = None  # metric -> model -> differs from best
    significance_note: str | None = None  # why there are no marks

    def counts_line(self) -> str:
        new_trials = sum(m.trials.get("new", 0) for m in self.models)
        runs = [o for m in self.models for o in m.outcomes]
        reused = sum(o.reused for o in runs)
        failed = sum(o.error is not None for o in runs)
        return (f"this call: {new_trials} trial(s) run, {len(runs) - reused - failed} seed "
                f"run(s) trained, {reused} reused (finished before with the same config), "
                f"{failed} failed; wall time {self.wall_seconds:.0f} s")

    def budget_json(self) -> dict[str, Any]:
        return {**asdict(self.budget), "seeds": list(self.budget.seeds),
                "selection": f"validation {self.metric} (best completed trial)"}


def refuse_test_selection(base: dict[str, Any]) -> None:
    """One-line errors for settings that would select on test or break the equal budget."""
    for key, option in BUDGET_KEYS.items():
        if key in base:
            raise ConfigError(f"{key}={base[key]!r}: the budget is the same for every model; "
                              f"give it with {option}, not as a config key")
    metric = base.get("valid_metric")
    if isinstance(metric, str) and "test" in metric.lower():
        raise ConfigError(f"valid_metric={metric!r}: a benchmark selects on the validation "
                          f"split only (e.g. recall@20, read on validation)")


def model_base(model: str, base: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``base`` that ``model`` takes: training keys, its own keys, and keys no
    model has (so that a misspelt key is an error naming it)."""
    cls = get_model_class(model)
    every = {k for c in MODELS.values() for k in c.Config.model_fields}
    return {k: v for k, v in base.items() if k in cls.Config.model_fields or k not in every}


def check_models(models: Sequence[str], data: str | Path, base: dict[str, Any]) -> None:
    """Every model is known, has a space and can run on ``data``, before anything trains."""
    if not models:
        raise ConfigError("--models: give at least one model")
    if len(set(models)) != len(models):
        dup = next(m for m in models if models.count(m) > 1)
        raise ConfigError(f"--models: {dup!r} is given twice")
    if not Path(data).is_dir():
        raise ConfigError(f"{data}: not a dataset directory")
    mods = dataset_modalities({**base, "data": str(data)})
    for m in models:
        cls = get_model_class(m)
        space_path(m)
        if cls.needs_features and not mods:
            raise ConfigError(f"model {m!r} needs item features and {data} has none "
                              f"(*_feat.npy); leave it out of --models")


def compute_seconds(run_dirs: Sequence[Path]) -> float:
    """Train + evaluation seconds of every epoch the runs' logs record."""
    total = 0.0
    for d in run_dirs:
        total += sum(float(r.get("train_seconds", 0.0)) + float(r.get("eval_seconds", 0.0))
                     for r in read_log(d))
    return total


def run_benchmark(data: str | Path, models: Sequence[str], budget: Budget, out: Path,
                  base: dict[str, Any] | None = None, *, backend: str = "local",
                  ray_options: dict[str, Any] | None = None, tracking_uri: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Tune every model with ``budget``, run each chosen configuration's seeds, compare."""
    require_optuna()
    t0 = time.monotonic()
    base = {k: v for k, v in (base or {}).items() if k != "model"}
    refuse_test_selection(base)
    budget.check()
    data = str(Path(data).resolve())
    models = list(models)
    check_models(models, data, base)
    common = {**base, "data": data, "epochs": budget.max_epochs, "patience": budget.patience,
              "seed": budget.tune_seed}
    metric = resolve_config({**model_base(models[0], common), "model": models[0]}).flat()[
        "valid_metric"]
    out = prepare_out(out)
    say = on_line or (lambda line: None)
    done = []
    for model in models:
        mbase = model_base(model, common)
        say(f"{model}: search of {budget.trials} trials in {out / 'tune' / model}")
        found = tune(model, data, space_path(model), budget.trials, out / "tune" / model,
                     base=mbase, sampler=budget.sampler, pruner=budget.pruner,
                     warmup_epochs=budget.warmup_epochs, startup_trials=budget.startup_trials,
                     backend=backend, ray_options=ray_options, tracking_uri=tracking_uri,
                     on_trial=lambda line, m=model: say(f"{m}: {line}"))
        trial_dirs = [Path(t["run_dir"]) for t in found.trials if t.get("run_dir")]
        mo = ModelOutcome(model, None, None, None, dict(found.counts),
                          study=str(out / "tune" / model / "study.db"))
        if found.best is not None:
            mo.chosen, mo.best_trial = dict(found.best["params"]), int(found.best["number"])
            mo.best_valid = float(found.best["valid"][metric])
            mo.outcomes = _seed_runs(model, mbase, mo.chosen, budget.seeds, out, backend,
                                     ray_options, tracking_uri, say)
            rows = aggregate(mo.outcomes)
            mo.row = rows[0] if rows else None
        else:
            say(f"{model}: no trial completed; no seed runs")
        mo.compute_seconds = compute_seconds(sorted(set(trial_dirs)) + mo.run_dirs)
        done.append(mo)
    result = BenchmarkResult(data, out, budget, metric, done, time.monotonic() - t0)
    result.marks, result.significance_note = significance_marks_for(result)
    return result


def _seed_runs(model: str, mbase: dict[str, Any], chosen: dict[str, Any], seeds: Sequence[int],
               out: Path, backend: str, ray_options: dict[str, Any] | None,
               tracking_uri: str | None, say: Callable[[str], None]) -> list[RunOutcome]:
    base = {k: v for k, v in mbase.items() if k != "seed"}
    base.setdefault("keep_checkpoint", False)
    specs = plan_runs(model, base, [chosen], seeds, out / "runs" / model, labels=[model])
    say(f"{model}: {len(specs)} seed run(s) of the chosen configuration in "
        f"{specs[0].run_dir.parent}")

    def finished(o: RunOutcome) -> None:
        state = "failed: " + o.error if o.error else ("reused" if o.reused else "done")
        say(f"{model}: seed {o.spec.seed} {state}")

    return run_tracked(specs, base.get("tracking"), out / "runs" / model,
                       tracking_uri=tracking_uri, push_hint=out, on_done=finished,
                       backend=backend, ray_options=ray_options)


def shown_metrics(result: BenchmarkResult) -> list[str]:
    """Every recall@K and ndcg@K that all finished models have (the table's columns)."""
    return table_metrics([m.row for m in result.models if m.row is not None])


def significance_marks_for(result: BenchmarkResult) -> tuple[dict[str, dict[str, bool]] | None,
                                                    str | None]:
    """Which cells differ from their column's best: the paired, Holm-corrected t-tests over
    users of :func:`mgnm.evaluation.compare.significance_marks` on the seed runs' per-user
    results. ``(None, why)`` when they cannot be computed."""
    groups = {m.model: m.run_dirs for m in result.models if m.row is not None}
    if len(groups) < 2:
        return None, "significance needs at least two models with finished runs"
    from mgnm.errors import MgnmError
    from mgnm.evaluation.compare import significance_marks

    try:
        return significance_marks(groups, shown_metrics(result), split="test"), None
    except MgnmError as exc:
        return None, str(exc).splitlines()[0]
