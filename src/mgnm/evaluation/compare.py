"""Paired significance tests between runs, on their per-user results (``per_user.npz``).

Two runs evaluated on the same dataset score the same test users, so their difference is
measured user by user: for each user the metric of one run minus that of the other. The
tests here are all *paired* tests on that difference vector:

* the mean paired difference with a seeded 95% bootstrap interval (``scipy.stats.bootstrap``
  on the difference array, percentile method: BCa's jackknife costs time quadratic in the
  number of users, minutes on datasets of tens of thousands);
* the paired t-test p (``scipy.stats.ttest_rel``);
* the paired randomisation test p (``scipy.stats.permutation_test`` with
  ``permutation_type="samples"`` on the difference array: each user's sign is flipped at
  random, seeded);
* the t-test p values of all comparisons of one call corrected for multiple testing with
  Holm's step-down method (``statsmodels.stats.multitest.multipletests``).

An *entry* is one run directory, or a setting of an experiment (the directory holding its
``seed<N>`` runs): a setting's seeds are averaged per user over the users all of them
evaluated. An experiment directory stands for all its settings.

Public functions (stable; ``mgnm compare``, ``mgnm experiment`` and ``mgnm benchmark`` use
them): :func:`resolve_entries`, :func:`per_user_values`, :func:`paired_test`, :func:`holm`,
:func:`compare`, :func:`significance_marks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mgnm import storage
from mgnm.errors import MgnmError
from mgnm.evaluation.peruser import PER_USER_FILE, load_per_user

#: the data record every run writes beside its results (see :mod:`mgnm.data.fingerprint`)
DATA_RECORD = "data.json"
#: the significance level of :func:`significance_marks`
ALPHA = 0.05
#: bootstrap method of the confidence interval (scipy.stats.bootstrap)
CI_METHOD = "percentile"
#: resampled values held in memory at once (scipy's ``batch`` is set from them): the
#: permutation test loops in Python over the users once per batch, so it gets larger batches
_BOOTSTRAP_VALUES = 2_000_000
_PERMUTATION_VALUES = 10_000_000


class CompareError(MgnmError):
    """Runs that cannot be compared (one run, another dataset, a missing metric)."""


def _stats_modules() -> tuple[Any, Any]:
    """``scipy.stats`` and statsmodels' ``multipletests``, or a one-line error naming the
    extra."""
    try:
        import scipy.stats as st
        from statsmodels.stats.multitest import multipletests
    except ImportError as exc:
        raise MgnmError(f"comparing runs needs scipy and statsmodels ({exc.name} is not "
                        f"installed): pip install 'mgnm[stats]'") from None
    return st, multipletests


@dataclass
class Entry:
    """One side of a comparison: a label (the directory given) and its run directories
    (one run, or the seeds of one setting)."""

    label: str
    run_dirs: list[Path] = field(default_factory=list)


def _is_run(path: Path) -> bool:
    return (path / "result.json").is_file() or (path / "config.yaml").is_file()


def _seed_runs(path: Path) -> list[Path]:
    return sorted((p for p in path.glob("seed*") if p.is_dir() and _is_run(p)),
                  key=lambda p: (len(p.name), p.name))


def resolve_entries(paths: Sequence[str | Path]) -> list[Entry]:
    """Entries of ``paths``: a run directory is one entry; a setting directory
    (``<setting>-<digest>`` holding ``seed<N>`` runs) is one entry of its seeds; an
    experiment directory is one entry per setting found in it or one level further down
    (``mgnm experiment table1`` keeps a folder per model)."""
    entries: list[Entry] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise CompareError(f"{path}: no such run or experiment directory")
        if _is_run(path):
            entries.append(Entry(str(path), [path]))
            continue
        seeds = _seed_runs(path)
        if seeds:
            entries.append(Entry(str(path), seeds))
            continue
        found = []
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            if _is_run(sub):
                found.append(Entry(str(sub), [sub]))
            elif seeds := _seed_runs(sub):
                found.append(Entry(str(sub), seeds))
            else:
                found += [Entry(str(s), r) for s in sorted(sub.iterdir())
                          if s.is_dir() and (r := _seed_runs(s))]
        if not found:
            raise CompareError(f"{path}: no runs in it (a run directory holds result.json; an "
                               f"experiment keeps its runs in <setting>/seed<N>)")
        entries += found
    return entries


def _data_files(run_dir: Path) -> dict[str, Any]:
    path = run_dir / DATA_RECORD
    if not path.is_file():
        raise CompareError(f"{path}: missing, so the run's dataset is unknown (runs trained by "
                           f"this version of mgnm write it)")
    record = storage.read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise CompareError(f"{path}: not a dataset record (no 'files' fingerprint)")
    return record["files"]


def check_same_data(run_dirs: Sequence[Path]) -> None:
    """Every run was trained and evaluated on the same dataset files (and hence the same
    split): their ``data.json`` fingerprints agree; otherwise one line naming two runs."""
    first = Path(run_dirs[0])
    ref = _data_files(first)
    for other in run_dirs[1:]:
        if _data_files(Path(other)) != ref:
            raise CompareError(f"{first} and {other} were evaluated on different datasets "
                               f"or splits (their data.json fingerprints differ); paired "
                               f"tests need the same users and test items")


def _run_values(run_dir: Path, metric: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    splits = load_per_user(run_dir / PER_USER_FILE)
    where = run_dir / PER_USER_FILE
    if split not in splits:
        raise CompareError(f"{where}: no split {split!r}; splits: {', '.join(sorted(splits))}")
    sv = splits[split]
    if metric not in sv.values:
        raise CompareError(f"{where}: no metric {metric!r} for {split} (the run's topk and "
                           f"metrics give: {', '.join(sorted(sv.values))})")
    values = sv.values[metric]
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise CompareError(f"{where}: {split}.{metric} has {bad.size} non-finite value(s) "
                           f"(first at user {int(sv.users[bad[0]])})")
    return sv.users, values


class UserValues(NamedTuple):
    """Per-user values of an entry: ``users`` ascending, ``values`` aligned with them (the
    seeds' mean per user), and ``seed_means``, each seed's mean over those users."""

    users: np.ndarray
    values: np.ndarray
    seed_means: np.ndarray


def per_user_values(run_dirs: Sequence[str | Path], metric: str = "recall@20",
                    split: str = "test") -> UserValues:
    """Per-user ``metric`` on ``split`` of one run, or of several seeds of one setting
    averaged per user over the users every seed evaluated. The runs must share a dataset
    (:func:`check_same_data`) and have ``per_user.npz``."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise CompareError("no runs given")
    check_same_data(run_dirs)
    loaded = [_run_values(d, metric, split) for d in run_dirs]
    users = loaded[0][0]
    for u, _ in loaded[1:]:
        users = np.intersect1d(users, u)
    if users.size == 0:
        raise CompareError(f"{run_dirs[0]}: no {split} user is evaluated by every run given")
    per_seed = np.stack([v[np.searchsorted(u, users)] for u, v in loaded])
    return UserValues(users, per_seed.mean(axis=0), per_seed.mean(axis=1))


def _batch(n: int, resamples: int, values: int) -> int:
    return max(1, min(resamples, values // max(n, 1)))


def paired_test(a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = 10_000,
                intervals: bool = True) -> dict[str, Any]:
    """Paired tests of ``a`` against ``b`` (aligned per user): ``mean`` (of a),
    ``baseline_mean`` (of b), ``diff`` (mean of a - b), ``ci95`` (percentile bootstrap
    interval of the mean difference, seeded), ``p_ttest`` (``ttest_rel(a, b)``), ``p_randomization``
    (sign-flip permutation test of the mean difference, two-sided, seeded).
    ``intervals=False`` leaves out the two resampling results (``None``).

    Differences that are all equal have no spread to test: all zero gives p = 1 and the
    interval [0, 0]; a constant non-zero difference gives t-test p = 0 and the interval
    [d, d]."""
    st, _ = _stats_modules()
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    out: dict[str, Any] = {"mean": float(a.mean()), "baseline_mean": float(b.mean()),
                           "diff": float(d.mean()), "ci95": None, "p_ttest": None,
                           "p_randomization": None}
    constant = d.size < 2 or bool(np.all(d == d[0]))
    if constant:
        c = float(d[0]) if d.size else 0.0
        out["p_ttest"] = 1.0 if c == 0 else 0.0
    else:
        out["p_ttest"] = float(st.ttest_rel(a, b).pvalue)
    if not intervals:
        return out
    if constant:
        out["ci95"] = [out["diff"], out["diff"]]
        out["p_randomization"] = 1.0 if out["diff"] == 0 else None
    if out["ci95"] is None:
        ci = st.bootstrap((d,), np.mean, n_resamples=resamples, vectorized=True,
                          batch=_batch(d.size, resamples, _BOOTSTRAP_VALUES),
                          confidence_level=0.95, method=CI_METHOD,
                          rng=np.random.default_rng(seed)).confidence_interval
        out["ci95"] = [float(ci.low), float(ci.high)]
    if out["p_randomization"] is None:
        res = st.permutation_test((d,), _mean_last, permutation_type="samples",
                                  n_resamples=resamples, vectorized=True,
                                  batch=_batch(d.size, resamples, _PERMUTATION_VALUES),
                                  alternative="two-sided", rng=np.random.default_rng(seed))
        out["p_randomization"] = float(res.pvalue)
    return out


def _mean_last(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down correction of ``pvalues`` (statsmodels ``multipletests``)."""
    if len(pvalues) == 0:
        return []
    _, multipletests = _stats_modules()
    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def _as_entry(x: str | Path | Entry) -> list[Entry]:
    return [x] if isinstance(x, Entry) else resolve_entries([x])


def compare(entries: Sequence[str | Path | Entry], metric: str = "recall@20",
            split: str = "test", baseline: str | Path | Entry | None = None, seed: int = 0,
            resamples: int = 10_000) -> dict[str, Any]:
    """Compare every entry with ``baseline`` (default: the first entry) on ``metric``.

    ``entries``: run directories, setting directories (their seeds) or experiment
    directories (their settings), or :class:`Entry` objects. A ``baseline`` not among them
    is added; an entry given twice is compared once.

    Returns ``{"metric", "split", "baseline", "users", "comparisons": [...],
    "baseline_seeds", "baseline_seed_mean", "baseline_seed_std", "method", "resamples",
    "seed"}``, one comparison per other entry with ``run``, ``mean``, ``baseline_mean``,
    ``diff``, ``ci95``, ``p_ttest``, ``p_randomization``, ``p_holm`` (Holm over the call's
    t-test p values), ``rel_change`` (diff / baseline mean, None when that is 0), ``users``
    (users both evaluated), ``seeds`` and ``seed_mean``/``seed_std`` (each seed's mean over
    the entry's users; std with ddof=1, 0 for one seed). ``users`` at the top is the number
    of users the baseline shares with every other entry."""
    resolved = [e for x in entries for e in _as_entry(x)]
    if baseline is not None:
        base_entries = _as_entry(baseline)
        if len(base_entries) != 1:
            raise CompareError(f"--baseline {baseline}: holds {len(base_entries)} settings; "
                               f"give one run or setting directory")
        resolved = base_entries + resolved
    # an entry given twice (or the baseline again) is compared once
    seen: set[tuple[Path, ...]] = set()
    unique = []
    for e in resolved:
        key = tuple(Path(d).resolve() for d in e.run_dirs)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    base, resolved = unique[0], unique[1:]
    if not resolved:
        given = ", ".join(str(x.label if isinstance(x, Entry) else x) for x in entries)
        raise CompareError(f"nothing to compare: {given} is one run or setting; give at "
                           f"least two")
    check_same_data([d for e in [base, *resolved] for d in e.run_dirs])
    _stats_modules()
    bv = per_user_values(base.run_dirs, metric, split)
    shared = bv.users
    rows = []
    for e in resolved:
        ev = per_user_values(e.run_dirs, metric, split)
        users = np.intersect1d(bv.users, ev.users)
        if users.size == 0:
            raise CompareError(f"{e.label} and {base.label} share no evaluated {split} user")
        shared = np.intersect1d(shared, users)
        t = paired_test(ev.values[np.searchsorted(ev.users, users)],
                        bv.values[np.searchsorted(bv.users, users)], seed=seed,
                        resamples=resamples)
        rows.append({"run": e.label, **t, "p_holm": None,
                     "rel_change": t["diff"] / t["baseline_mean"] if t["baseline_mean"] else None,
                     "users": int(users.size), "seeds": len(e.run_dirs),
                     "seed_mean": float(ev.seed_means.mean()),
                     "seed_std": _std(ev.seed_means)})
    for row, p in zip(rows, holm([r["p_ttest"] for r in rows]), strict=True):
        row["p_holm"] = p
    return {"metric": metric, "split": split, "baseline": base.label, "users": int(shared.size),
            "comparisons": rows, "baseline_seeds": len(base.run_dirs),
            "baseline_seed_mean": float(bv.seed_means.mean()),
            "baseline_seed_std": _std(bv.seed_means), "method": CI_METHOD,
            "resamples": resamples, "seed": seed}


def _std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def significance_marks(groups: dict[str, list[Path]], metrics: Sequence[str],
                       split: str = "test") -> dict[str, dict[str, bool]]:
    """For each metric (a table column): which models differ significantly from the best.

    ``groups`` maps a model's name to its run directories (its seeds, averaged per user).
    For each metric the best model is the one with the highest mean per-user value; every
    other model is paired-t-tested (``ttest_rel``) against it over the users both evaluated,
    the p values of the column are Holm-corrected, and the model is marked ``True`` when the
    corrected p < :data:`ALPHA` (0.05). The best model is ``False``. Returns
    ``{metric: {name: marked}}``. Raises :class:`MgnmError` (one line) when a run has no
    per-user results, lacks the metric, or the runs are on different datasets."""
    names = list(groups)
    out: dict[str, dict[str, bool]] = {}
    if not names:
        return out
    check_same_data([Path(d) for n in names for d in groups[n]])
    for metric in metrics:
        vals = {n: per_user_values(groups[n], metric, split) for n in names}
        best = max(names, key=lambda n: float(vals[n].values.mean()))
        others = [n for n in names if n != best]
        ps = []
        for n in others:
            users = np.intersect1d(vals[n].users, vals[best].users)
            a = vals[n].values[np.searchsorted(vals[n].users, users)]
            b = vals[best].values[np.searchsorted(vals[best].users, users)]
            ps.append(paired_test(a, b, intervals=False)["p_ttest"])
        corrected = holm(ps)
        out[metric] = {best: False, **{n: p < ALPHA for n, p in zip(others, corrected,
                                                                    strict=True)}}
    return out
