"""``mgnm tune``: Optuna over a space file, trials pruned on their validation curve.

- Every trial is an ordinary run (the experiments' :func:`~mgnm.experiments.runners.local.run_one`) in
  ``<out>/trials/<name>-<digest>/seed<N>``, keyed by its resolved config like every
  experiment run: a config sampled twice is trained once, an interrupted trial resumes from
  its checkpoint.
- Each epoch a trainer :class:`~mgnm.train.trainer.Callback` reports the validation metric
  (``valid_metric``) to Optuna and raises :class:`optuna.TrialPruned` when the pruner says so.
- Selection is on validation only. The chosen trial's test metrics are computed once, at
  the end, from its best weights, and reported beside its validation figure.
- The study lives in ``<out>/study.db`` (SQLite; ``storage`` takes any Optuna RDB URL), so a
  killed search continues where it stopped: trials left running by a dead driver are
  marked failed and re-queued with the same parameters (they resume from their checkpoint).
- ``backend="ray"``: the driver asks Optuna for trials and runs each as a Ray task; the task
  reports to the shared storage and Optuna's pruner decides there (Optuna's own distributed
  mode, see docs/distributed.md for why not Ray Tune).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgnm.config import resolve_config
from mgnm.errors import ConfigError, MgnmError
from mgnm.experiments.grid import RunSpec, plan_runs
from mgnm.experiments.runners.local import attempt, run_one, with_threads
from mgnm.storage import read_json, write_json
from mgnm.track import tracking_for
from mgnm.train.trainer import Callback, EpochRecord
from mgnm.tune.space import Param, load_space, suggest_all

STUDY_NAME = "mgnm-tune"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", "none")


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MgnmError("mgnm tune needs Optuna: pip install 'mgnm[tune]'") from None
    return optuna


def make_sampler(name: str, params: list[Param], seed: int) -> Any:
    optuna = require_optuna()
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":  # the grid is enqueued (see enqueue_grid); nothing is left to sample
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; samplers: {', '.join(SAMPLERS)}")


def make_pruner(name: str, warmup_epochs: int, startup_trials: int = 5) -> Any:
    optuna = require_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_epochs)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_epochs))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; pruners: {', '.join(PRUNERS)}")


class PruneOnValidation(Callback):
    """Reports each epoch's validation ``metric`` to an Optuna trial; raises
    :class:`optuna.TrialPruned` when the trial's pruner says stop."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_epoch(self, record: EpochRecord) -> None:
        self.trial.report(float(record.valid[self.metric]), step=record.epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")


def run_trial(trial: Any, spec: RunSpec, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train (or resume, or reuse) one trial's run; ``{"state": complete|pruned|failed, ...}``.
    ``callbacks`` see each epoch before the pruner decides."""
    import optuna

    t0 = time.monotonic()
    prune = PruneOnValidation(trial, spec.valid_metric)
    try:
        out = attempt(spec, lambda: run_one(spec, [*callbacks, prune]))
    except optuna.TrialPruned as exc:
        return {"state": "pruned", "detail": str(exc), "seconds": time.monotonic() - t0}
    if out.error:
        return {"state": "failed", "detail": out.error, "seconds": time.monotonic() - t0}
    r = out.result
    return {"state": "complete", "value": float(r["valid"][spec.valid_metric]),
            "epochs": int(r["epochs_run"]), "reused": out.reused,
            "seconds": time.monotonic() - t0}


def _ray_trial(storage: str, trial_id: int, pruner: tuple[str, int, int], spec: RunSpec
               ) -> dict[str, Any]:
    """A trial in a Ray task: it joins the study over the shared storage to report and prune."""
    optuna = require_optuna()
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage,
                              pruner=make_pruner(*pruner))
    return run_trial(optuna.trial.Trial(study, trial_id), spec)


@dataclass
class TuneResult:
    out: Path
    counts: dict[str, int]
    best: dict[str, Any] | None  # number, params, run_dir, valid, test
    wall_seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        c = self.counts
        lines = [f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
                 f"({c['new']} run now); wall time this call {self.wall_seconds:.0f} s"]
        if self.best is None:
            lines.append("no trial completed")
            return "\n".join(lines) + "\n"
        b, m = self.best, self.best["metric"]
        lines += [f"best trial #{b['number']} (selected on validation {m}): "
                  + ", ".join(f"{k}={v!r}" for k, v in b["params"].items()),
                  f"  run directory: {b['run_dir']}",
                  f"  validation {m}: {b['valid'][m]:.4f}",
                  f"  test {m}: {b['test'][m]:.4f}   (computed once, after the search)"]
        full = self.full_trial_estimate()
        if full is not None:
            lines.append(f"  estimated wall time of {self.counts['total']} full (unpruned) "
                         f"trials: {full:.0f} s (mean of the completed trials x {c['total']}; "
                         f"an estimate)")
        return "\n".join(lines) + "\n"

    def full_trial_estimate(self) -> float | None:
        secs = [t["seconds"] for t in self.trials
                if t.get("state") == "COMPLETE" and not t.get("reused") and t.get("seconds")]
        return sum(secs) / len(secs) * self.counts["total"] if secs else None


def _identity_digest(model: str, data: str, params: list[Param], base: dict[str, Any],
                     seed: int, metric: str) -> str:
    base = {k: v for k, v in base.items() if k != "tracking"}  # how it is watched, not what
    text = json.dumps({"model": model, "data": data, "base": base, "seed": seed, "metric": metric,
                       "space": [repr(p) for p in params]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def open_study(out: Path, storage: str | None, sampler: Any, pruner: Any, digest: str) -> Any:
    """Create or continue the study; refuse a study of another search in the same place."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or f"sqlite:///{out / 'study.db'}"
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=url, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    except Exception as exc:  # SQLAlchemy/driver errors of many types
        raise MgnmError(f"{url}: cannot open the Optuna storage "
                        f"({str(exc).splitlines()[0]})") from None
    have = study.user_attrs.get("search")
    if have is None:
        study.set_user_attr("search", digest)
    elif have != digest:
        raise ConfigError(f"{url} holds a search of another model, data, space or base config; "
                          f"choose another --out (or --storage)")
    return study


def enqueue_grid(study: Any, params: list[Param]) -> int:
    """Queue every point of the grid not tried yet (Optuna's GridSampler stops the study from
    inside ``tell``, which the ask-and-tell loop here cannot use); returns the grid's size."""
    names = [p.name for p in params]
    points = list(itertools.product(*(p.grid_values() for p in params)))
    for values in points:
        study.enqueue_trial(dict(zip(names, values, strict=True)), skip_if_exists=True)
    return len(points)


def _requeue_orphans(study: Any) -> int:
    """Trials left RUNNING by a driver that died: mark them failed, queue their parameters
    again (the new trial resumes the same run directory from its checkpoint)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        n += 1
    return n


def _counts(study: Any, total: int) -> dict[str, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = {s: sum(t.state == s for t in trials) for s in TrialState}
    failed = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials)
    return {"complete": done[TrialState.COMPLETE], "pruned": done[TrialState.PRUNED],
            "failed": failed, "total": total}


def tune(model: str, data: str | Path, space: str | Path, trials: int, out: Path, *,
         base: dict[str, Any] | None = None, sampler: str = "tpe", pruner: str = "median",
         warmup_epochs: int = 5, startup_trials: int = 5, backend: str = "local",
         storage: str | None = None,
         ray_options: dict[str, Any] | None = None,
         on_trial: Callable[[str], None] | None = None,
         tracking_uri: str | None = None) -> TuneResult:
    """Run (or continue) a search until ``trials`` trials have finished; see the module doc.

    With config key ``tracking`` in ``base`` the search is one run in the tracker and each
    trial a child run of it, with its pruning (MLflow: one experiment named after ``out``,
    the store ``out/mlflow.db`` unless ``tracking_uri``; trials on Ray are sent when they
    end)."""
    require_optuna()
    from optuna.trial import TrialState

    from mgnm.experiments.sweep import prepare_out

    t0 = time.monotonic()
    out = prepare_out(out)
    base = {k: v for k, v in (base or {}).items() if k != "model"}
    base.setdefault("keep_checkpoint", False)  # finished trials keep best.pt, not checkpoint.pt
    base["data"] = str(Path(data).resolve())
    params = load_space(space, model, base)
    resolved = resolve_config({**base, "model": model}).flat()
    metric, seed = resolved["valid_metric"], int(resolved["seed"])
    digest = _identity_digest(model, base["data"], params, base, seed, metric)
    study = open_study(out, storage, None, make_pruner(pruner, warmup_epochs, startup_trials),
                       digest)
    # seeded, and offset by the trials already stored so a continued search does not
    # propose its first trials again
    study.sampler = make_sampler(sampler, params, seed + len(study.get_trials(deepcopy=False)))
    if sampler == "grid":
        trials = min(trials, enqueue_grid(study, params))
    requeued = _requeue_orphans(study)
    if requeued and on_trial:
        on_trial(f"re-queued {requeued} trial(s) left running by an interrupted search")
    finished = lambda: sum(v for k, v in _counts(study, trials).items()  # noqa: E731
                           if k in ("complete", "pruned", "failed"))
    new = 0
    tracker = tracking_for(base.get("tracking"), out, uri=tracking_uri, push_hint=out)
    if tracker is not None:
        tracker.start().open_study(out)

    def ask() -> tuple[Any, RunSpec]:
        trial = study.ask()
        chosen = suggest_all(trial, params, resolved)
        [spec] = plan_runs(model, base, [chosen], [seed], out / "trials")
        trial.set_user_attr("run_dir", str(spec.run_dir))
        return trial, spec

    def tell(trial: Any, spec: RunSpec, res: dict[str, Any]) -> None:
        nonlocal new
        new += 1
        for k in ("seconds", "epochs", "reused", "detail"):
            if k in res:
                trial.set_user_attr(k, res[k])
        if res["state"] == "complete":
            study.tell(trial, res["value"])
            line = f"valid {metric} {res['value']:.4f} ({res['epochs']} epochs)"
        elif res["state"] == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
            line = res["detail"]
        else:
            trial.set_user_attr("error", res["detail"])
            study.tell(trial, state=TrialState.FAIL)
            line = f"failed: {res['detail']}"
        if on_trial:
            on_trial(f"trial #{trial.number} {res['state']:8s} {line}  "
                     f"[{finished()}/{trials} done] {spec.run_dir.parent.name}")
        if tracker is not None:  # what no callback saw: a reused run, a trial on Ray
            tracker.sync(spec.run_dir, TRIAL_STATE[res["state"]], res.get("detail"))

    try:
        if backend == "local":
            while finished() < trials:
                trial, spec = ask()
                tell(trial, spec, run_trial(trial, spec, [tracker] if tracker else []))
        elif backend == "ray":
            _run_on_ray(study, ask, tell, finished, trials,
                        storage or f"sqlite:///{out / 'study.db'}",
                        (pruner, warmup_epochs, startup_trials), ray_options or {})
        else:
            raise ConfigError(f"unknown backend {backend!r}; backends: local, ray")
        result = _summarise(study, out, trials, metric, time.monotonic() - t0, new)
        if tracker is not None:
            tracker.finish_study(read_json(out / "tune.json"), out / "tune.json")
        return result
    finally:
        if tracker is not None:
            tracker.close()


#: a trial's outcome as the state of its run in a tracker
TRIAL_STATE = {"complete": "finished", "pruned": "pruned", "failed": "failed"}


def _run_on_ray(study: Any, ask: Callable, tell: Callable, finished: Callable[[], int],
                trials: int, storage: str, pruner: tuple[str, int, int], opts: dict[str, Any]
                ) -> None:
    """Keep as many trials in flight as the cluster has room for; Ray places them."""
    from mgnm.experiments.runners.ray import ray_session

    cpus, gpus = float(opts.get("cpus_per_run", 1.0)), float(opts.get("gpus_per_run", 0.0))
    with ray_session(opts.get("address"), opts.get("num_cpus")) as ray:
        task = ray.remote(_ray_trial).options(num_cpus=cpus, num_gpus=gpus,
                                              max_retries=int(opts.get("max_retries", 3)),
                                              retry_exceptions=False)
        width = max(1, int(ray.cluster_resources().get("CPU", 1.0) // cpus))
        inflight: dict[Any, tuple[Any, RunSpec]] = {}
        while finished() + len(inflight) < trials or inflight:
            while finished() + len(inflight) < trials and len(inflight) < width:
                trial, spec = ask()
                inflight[task.remote(storage, trial._trial_id, pruner,
                                     with_threads(spec, max(1, int(cpus))))] = (trial, spec)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                trial, spec = inflight.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as exc:  # the worker died more than max_retries times
                    res = {"state": "failed", "detail": f"{type(exc).__name__}: "
                           f"{(str(exc).strip().splitlines() or ['no detail'])[-1]}"}
                tell(trial, spec, res)


def _summarise(study: Any, out: Path, total: int, metric: str, wall: float, new: int
               ) -> TuneResult:
    from optuna.trial import TrialState

    from mgnm import api

    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             **t.user_attrs} for t in study.get_trials(deepcopy=False)]
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = None
    if done:
        t = max(done, key=lambda x: (x.value, -x.number))  # validation only; ties: the first
        metrics = api.evaluate_run(t.user_attrs["run_dir"])
        best = {"number": t.number, "params": t.params, "run_dir": t.user_attrs["run_dir"],
                "metric": metric, "valid": metrics["valid"], "test": metrics["test"]}
    result = TuneResult(out, {**_counts(study, total), "new": new}, best, wall, rows)
    write_json(out / "tune.json", {"best": best, "counts": result.counts,
                                      "wall_seconds": wall,
                                      "full_trials_estimate_seconds": result.full_trial_estimate(),
                                      "trials": rows})
    return result
