"""Paired comparisons of runs (``mgnm compare``, :mod:`mgnm.evaluation.compare`) and the
significance marks of experiment tables: values against scipy called directly and against
hand-worked numbers; bad input as a user meets it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from clitools import assert_user_error, run_mgnm
from conftest import need

need("scipy", "statsmodels", extra="stats")

import scipy.stats as st  # noqa: E402

from mgnm.cli import main  # noqa: E402
from mgnm.evaluation.compare import (  # noqa: E402
    compare,
    holm,
    paired_test,
    per_user_values,
    resolve_entries,
    significance_marks,
)
from mgnm.evaluation.peruser import SplitValues, save_per_user  # noqa: E402

DATA = {"path": "/somewhere/tiny", "files": {"tiny.inter": {"size": 10, "sha256": "aa"}}}
OTHER_DATA = {"path": "/somewhere/tiny", "files": {"tiny.inter": {"size": 10, "sha256": "bb"}}}


def make_run(d: Path, values: dict[str, np.ndarray], users=None, data=DATA,
             split: str = "test") -> Path:
    """A finished run directory with per-user results ``values`` (metric -> array)."""
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("model: bpr\n")
    (d / "result.json").write_text(json.dumps({"test": {k: float(np.mean(v))
                                                        for k, v in values.items()}}))
    (d / "data.json").write_text(json.dumps(data))
    n = len(next(iter(values.values())))
    users = np.arange(n) if users is None else np.asarray(users)
    save_per_user(d / "per_user.npz", {split: SplitValues(users, values)})
    return d


def pair(seed: int = 0, n: int = 200, shift: float = 0.02):
    rng = np.random.default_rng(seed)
    b = rng.random(n)
    a = np.clip(b + shift + 0.1 * rng.standard_normal(n), 0, 1)
    return a, b


def test_paired_results_equal_scipy_called_directly_on_the_same_arrays(tmp_path):
    a, b = pair()
    base = make_run(tmp_path / "base", {"recall@20": b})
    run = make_run(tmp_path / "run", {"recall@20": a})
    res = compare([base, run], seed=7, resamples=10_000)
    [c] = res["comparisons"]
    d = a - b
    ci = st.bootstrap((d,), np.mean, n_resamples=10_000, vectorized=True, method="percentile",
                      confidence_level=0.95, rng=np.random.default_rng(7)).confidence_interval
    perm = st.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis),
                               permutation_type="samples", n_resamples=10_000, vectorized=True,
                               rng=np.random.default_rng(7))
    assert c["ci95"] == [ci.low, ci.high]
    assert c["p_ttest"] == st.ttest_rel(a, b).pvalue
    assert c["p_randomization"] == perm.pvalue
    assert c["p_holm"] == c["p_ttest"]  # one comparison: Holm leaves it
    assert c["mean"] == a.mean() and c["baseline_mean"] == b.mean()
    assert c["diff"] == pytest.approx(d.mean(), abs=1e-15)
    assert c["rel_change"] == pytest.approx(d.mean() / b.mean(), rel=1e-12)
    assert res["users"] == c["users"] == 200
    # seeded: the same call gives the same interval and p; another seed moves them
    assert compare([base, run], seed=7)["comparisons"][0] == c
    assert compare([base, run], seed=8)["comparisons"][0]["ci95"] != c["ci95"]


def test_t_test_and_randomisation_p_by_hand():
    rng = np.random.default_rng(1)
    b = rng.random(9)
    a = b + rng.normal(0.1, 0.2, 9)
    d = a - b
    res = paired_test(a, b, seed=0, resamples=10_000)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    assert res["p_ttest"] == pytest.approx(2 * st.t.sf(abs(t), d.size - 1), rel=1e-10)
    # 2^9 = 512 sign patterns <= resamples: the randomisation test is exact; count them
    flips = np.array(list(itertools.product([1, -1], repeat=d.size)))
    extreme = np.abs((flips * d).mean(axis=1)) >= abs(d.mean()) - 1e-12
    assert res["p_randomization"] == pytest.approx(extreme.mean(), rel=1e-12)
    # the interval covers the observed mean difference
    assert res["ci95"][0] < d.mean() < res["ci95"][1]


def test_identical_runs_have_no_difference():
    a = np.random.default_rng(0).random(50)
    res = paired_test(a, a.copy())
    assert res["diff"] == 0 and res["ci95"] == [0.0, 0.0]
    assert res["p_ttest"] == 1.0 and res["p_randomization"] == 1.0


def test_holm_against_a_hand_worked_example(tmp_path):
    # sorted: 0.01*3 = 0.03; max(0.03, 0.03*2) = 0.06; max(0.06, 0.04*1) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []
    # compare() corrects its t-test p values over all comparisons of the call
    a, b = pair(0)
    runs = [make_run(tmp_path / "base", {"recall@20": b})]
    for k, shift in enumerate([0.0, 0.01, 0.05]):
        runs.append(make_run(tmp_path / f"r{k}", {"recall@20": pair(0, shift=shift)[0] +
                                                   0.01 * k}))
    cs = compare(runs)["comparisons"]
    p = [c["p_ttest"] for c in cs]
    order = np.argsort(p)
    m = len(p)
    by_hand = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        by_hand[i] = running
    assert [c["p_holm"] for c in cs] == pytest.approx(list(by_hand), rel=1e-12)


def test_seeds_of_a_setting_are_averaged_per_user_over_their_common_users(tmp_path):
    setting = tmp_path / "exp" / "bpr-0123456789"
    v1 = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    v2 = np.array([0.3, 0.0, 0.7, 0.2])  # users 0, 2, 3, 4 (user 1 not evaluated)
    make_run(setting / "seed1", {"recall@20": v1})
    make_run(setting / "seed2", {"recall@20": v2}, users=[0, 2, 3, 4])
    [entry] = resolve_entries([setting])
    assert [p.name for p in entry.run_dirs] == ["seed1", "seed2"]
    users, values, seed_means = per_user_values(entry.run_dirs, "recall@20", "test")
    assert users.tolist() == [0, 2, 3, 4]
    # seed1 at users 0, 2, 3, 4: 0.1, 0.3, 0.4, 0.5; seed2: 0.3, 0.0, 0.7, 0.2
    assert values.tolist() == pytest.approx([(0.1 + 0.3) / 2, (0.3 + 0.0) / 2,
                                             (0.4 + 0.7) / 2, (0.5 + 0.2) / 2])
    assert seed_means.tolist() == pytest.approx([(0.1 + 0.3 + 0.4 + 0.5) / 4,
                                                 (0.3 + 0.7 + 0.2 + 0.0) / 4])
    # a setting compared with one run: over the users both evaluated
    other = make_run(tmp_path / "other", {"recall@20": np.array([0.0, 9.0, 0.1, 0.1, 0.1])})
    res = compare([other, setting])
    [c] = res["comparisons"]
    assert c["run"] == str(setting) and c["seeds"] == 2 and c["users"] == 4
    assert c["mean"] == pytest.approx(values.mean())
    assert c["baseline_mean"] == pytest.approx(np.mean([0.0, 0.1, 0.1, 0.1]))
    assert c["seed_std"] == pytest.approx(np.std(seed_means, ddof=1))


def test_experiment_directories_are_one_entry_per_setting(tmp_path):
    v = {"recall@20": np.ones(3)}
    for model in ("bpr", "lightgcn"):  # table1: a folder per model
        for seed in (1, 2):
            make_run(tmp_path / "t1" / model / f"{model}-abc" / f"seed{seed}", v)
    make_run(tmp_path / "grid" / "mgnm_a=1-abc" / "seed1", v)
    make_run(tmp_path / "grid" / "mgnm_a=2-def" / "seed1", v)
    t1 = resolve_entries([tmp_path / "t1"])
    assert [Path(e.label).relative_to(tmp_path).as_posix() for e in t1] == \
        ["t1/bpr/bpr-abc", "t1/lightgcn/lightgcn-abc"]
    assert all(len(e.run_dirs) == 2 for e in t1)
    grid = resolve_entries([tmp_path / "grid"])
    assert [Path(e.label).name for e in grid] == ["mgnm_a=1-abc", "mgnm_a=2-def"]
    # the baseline may be a setting given separately; it is not compared with itself
    res = compare([tmp_path / "t1"], baseline=tmp_path / "t1" / "bpr" / "bpr-abc")
    assert [c["run"] for c in res["comparisons"]] == [str(tmp_path / "t1/lightgcn/lightgcn-abc")]


def test_significance_marks_the_models_that_differ_from_the_best(tmp_path):
    rng = np.random.default_rng(3)
    r = rng.random(300)
    groups = {
        "good": [make_run(tmp_path / "good" / f"seed{s}", {"recall@20": r, "ndcg@20": r})
                 for s in (1, 2)],
        "close": [make_run(tmp_path / "close", {"recall@20": r - 1e-3 * rng.standard_normal(300),
                                                "ndcg@20": r})],
        "bad": [make_run(tmp_path / "bad", {"recall@20": 0.5 * r, "ndcg@20": 0.5 * r})],
    }
    marks = significance_marks(groups, ["recall@20", "ndcg@20"])
    close = per_user_values(groups["close"], "recall@20").values
    best_is_good = r.mean() >= close.mean()
    p_close = st.ttest_rel(close, r).pvalue
    assert p_close > 0.05  # the premise: "close" is no different from "good"
    assert marks["recall@20"]["bad"] is True and marks["recall@20"]["close"] is False
    assert marks["recall@20"]["good" if best_is_good else "close"] is False
    assert marks["ndcg@20"] == {"good": False, "close": False, "bad": True}


# --- as a user meets it ---------------------------------------------------------------


@pytest.fixture
def two_runs(tmp_path):
    a, b = pair()
    vals = lambda x: {"recall@20": x, "ndcg@20": x / 2, "recall@10": x / 3}  # noqa: E731
    return (make_run(tmp_path / "base", vals(b)), make_run(tmp_path / "run", vals(a)))


def test_json_shape_is_exactly_the_documented_one(two_runs):
    res = run_mgnm("compare", *two_runs, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert list(out)[:5] == ["metric", "split", "baseline", "users", "comparisons"]
    assert (out["metric"], out["split"], out["baseline"], out["users"]) == \
        ("recall@20", "test", str(two_runs[0]), 200)
    [c] = out["comparisons"]
    assert list(c)[:8] == ["run", "mean", "baseline_mean", "diff", "ci95", "p_ttest",
                           "p_randomization", "p_holm"]
    assert c["run"] == str(two_runs[1]) and len(c["ci95"]) == 2
    assert all(isinstance(c[k], float) for k in ("mean", "baseline_mean", "diff", "p_ttest",
                                                  "p_randomization", "p_holm"))
    assert c == compare(list(two_runs))["comparisons"][0]  # the CLI prints the library's values


def test_human_table_and_options(two_runs):
    res = run_mgnm("compare", *two_runs, "--metric", "ndcg@20", "--baseline", two_runs[1])
    assert res.code == 0, res.err
    assert f"against {two_runs[1]}" in res.out and "ndcg@20" in res.out
    assert str(two_runs[0]) in res.out and "percentile bootstrap, 10000 resamples" in res.out


def test_bad_input_is_one_line_and_exit_2(two_runs, tmp_path):
    base, run = two_runs
    assert_user_error(run_mgnm("compare", base), "nothing to compare", str(base))
    assert_user_error(run_mgnm("compare", base, base), "nothing to compare")
    assert_user_error(run_mgnm("compare", base, tmp_path / "nope"), "nope",
                      "no such run or experiment directory")
    line = assert_user_error(run_mgnm("compare", base, run, "--metric", "recall@50"),
                             "recall@50", "per_user.npz")
    assert "ndcg@20, recall@10, recall@20" in line
    assert_user_error(run_mgnm("compare", base, run, "--metric", "hitt@20"), "hitt@20")
    assert_user_error(run_mgnm("compare", base, run, "--split", "valid"), "'valid'",
                      "splits: test")
    other = make_run(tmp_path / "other", {"recall@20": np.zeros(200)}, data=OTHER_DATA)
    assert_user_error(run_mgnm("compare", base, other), str(base), str(other),
                      "different datasets")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "result.json").write_text("{}")
    (bare / "data.json").write_text(json.dumps(DATA))
    assert_user_error(run_mgnm("compare", base, bare), "mgnm evaluate", "--per-user",
                      str(bare))
    (bare / "per_user.npz").write_bytes(b"not a zip")
    assert_user_error(run_mgnm("compare", base, bare), str(bare / "per_user.npz"))
    nan = make_run(tmp_path / "nan", {"recall@20": np.r_[0.5, np.nan, np.zeros(198)]})
    assert_user_error(run_mgnm("compare", base, nan), str(nan / "per_user.npz"),
                      "test.recall@20 has 1 non-finite value(s) (first at user 1)")
    (run / "data.json").unlink()
    assert_user_error(run_mgnm("compare", base, run), str(run / "data.json"), "missing")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_mgnm("compare", base, tmp_path / "empty"), "no runs in it")


# --- experiment tables ----------------------------------------------------------------


def test_experiment_table_marks_the_clearly_worse_model(tiny_dir, tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "table1", "--models", "bpr,lightgcn,vbpr", "-d", str(tiny_dir),
            "--seeds", "1,2", "--out", str(out), "--set", "epochs=1", "--set", "batch_size=64",
            "--set", "device=cpu"]
    assert main(args) == 0
    for f in out.glob("*/*/seed*/per_user.npz"):  # runs that wrote their own: start without
        f.unlink()
    assert main(args) == 0
    text = (out / "summary.md").read_text()
    assert "No significance marks: they need per-user results" in text and "†" not in text
    # per-user results: lightgcn clearly worse, vbpr as good as bpr
    rng = np.random.default_rng(0)
    r = rng.random(60)
    for run in sorted(out.glob("*/*/seed*")):
        model = run.parts[-3]
        keys = [k for k in json.loads((run / "result.json").read_text())["test"] if "@" in k]
        v = {"bpr": r, "vbpr": r + 1e-4 * rng.standard_normal(60), "lightgcn": 0.3 * r}[model]
        save_per_user(run / "per_user.npz", {"test": SplitValues(np.arange(60),
                                                                 {k: v for k in keys})})
    capsys.readouterr()
    assert main(args) == 0
    text = (out / "summary.md").read_text()
    assert text in capsys.readouterr().out
    lines = [x for x in text.splitlines() if x.startswith("| recall@") or x.startswith("| ndcg@")]
    assert lines
    for line in lines:  # columns: metric | bpr | lightgcn | vbpr
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert "†" in cells[2] and "†" not in cells[1] + cells[3], line
    assert "† differs from the best setting of that metric" in text
    marks = json.loads((out / "summary.json").read_text())["significance"]["marks"]
    assert marks["recall@20"] == {"bpr": False, "lightgcn": True, "vbpr": False}
    # older runs without a data record: the table still comes, saying why there are no marks
    for f in out.glob("*/*/seed*/data.json"):
        f.unlink()
    assert main(args) == 0
    text = (out / "summary.md").read_text()
    assert "No significance marks:" in text and "data.json: missing" in text
