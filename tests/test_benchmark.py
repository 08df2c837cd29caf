"""`mgnm benchmark` and `mgnm spaces`: a shipped space for every model, the same search
budget for every model, selection on validation, seeds, one table, resumable."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import need, write_dataset

optuna = need("optuna", extra="tune")

from clitools import assert_user_error, run_mgnm  # noqa: E402

from mgnm.config import resolve_config  # noqa: E402
from mgnm.errors import ConfigError  # noqa: E402
from mgnm.models import MODELS  # noqa: E402
from mgnm.tune.space import load_space, parse_space, suggest_all  # noqa: E402
from mgnm.tune.spaces import space_models, space_path  # noqa: E402

STUDY = "mgnm-tune"


def _in_space(p, value) -> bool:
    if p.choices is not None:
        return value in p.choices
    return p.low <= value <= p.high


def test_every_model_has_a_space_whose_samples_are_valid_configs(tiny_dir):
    assert space_models() == list(MODELS)
    for model, cls in MODELS.items():
        base = {"data": str(tiny_dir)}
        params = load_space(space_path(model), model, base)
        names = [p.name for p in params]
        assert "learning_rate" in names, model  # every model searches the learning rate
        # the reference grid of the model lies inside its space
        for key, values in cls.grid.items():
            [p] = [p for p in params if p.name == key]
            assert all(_in_space(p, v) for v in values), (model, key)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(15):
            trial = study.ask()
            chosen = suggest_all(trial, params, {})
            study.tell(trial, 0.0)
            flat = resolve_config({**base, **chosen, "model": model}).flat()
            for p in params:
                assert _in_space(p, chosen[p.name]), (model, p.name, chosen[p.name])
                if p.name != "modalities":  # given as "a,b", resolved to a list
                    assert flat[p.name] == pytest.approx(chosen[p.name]), (model, p.name)
                else:
                    assert flat["modalities"] == chosen["modalities"].split(",")


def test_mgnm_searches_all_modalities_or_all_but_one(tiny_dir, tmp_path):
    [p] = [p for p in load_space(space_path("mgnm"), "mgnm", {"data": str(tiny_dir)})
           if p.name == "modalities"]
    assert p.choices == ("image,text", "text", "image")  # the tiny data: image and text
    one = write_dataset(tmp_path, "one", modalities={"audio": 4})
    [p] = [p for p in load_space(space_path("mgnm"), "mgnm", {"data": str(one)})
           if p.name == "modalities"]
    assert p.choices == ("audio",)
    with pytest.raises(ConfigError, match="'subsets' is for key 'modalities' only"):
        parse_space({"alpha": {"subsets": "drop-one"}}, "f.yaml", ["a", "b"])
    with pytest.raises(ConfigError, match="'subsets' needs a dataset with"):
        parse_space({"modalities": {"subsets": "drop-one"}}, "f.yaml", [])


def test_spaces_command_lists_and_prints_them():
    res = run_mgnm("spaces")
    assert res.code == 0, res.err
    listed = [line.split()[0] for line in res.out.splitlines()]
    assert listed == list(MODELS)
    res = run_mgnm("spaces", "lightgcn")
    assert res.code == 0 and space_path("lightgcn").read_text() in res.out
    assert_user_error(run_mgnm("spaces", "lightgnc"), "unknown model 'lightgnc'",
                      "did you mean 'lightgcn'")


FAST = ["--set", "batch_size=64", "--set", "device=cpu"]


def _study(out: Path, model: str):
    return optuna.load_study(study_name=STUDY,
                             storage=f"sqlite:///{out / 'tune' / model / 'study.db'}")


def _finished(study) -> list:
    """Trials that count towards the budget (an orphan of a killed call is FAIL without
    an error and was queued again)."""
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and "error" in t.user_attrs)]


def _check_selection(out: Path, saved: dict, models: list[str], trials: int) -> None:
    for row in saved["models"]:
        study = _study(out, row["model"])
        assert len(_finished(study)) == trials, row["model"]  # the same budget for each
        # the chosen trial is the argmax of validation over the completed trials, read
        # from each trial's own result.json (ties: the lowest number)
        done = {t.number: json.loads((Path(t.user_attrs["run_dir"]) / "result.json")
                                     .read_text())["valid"]["recall@20"]
                for t in study.get_trials() if t.state.name == "COMPLETE"}
        best = max(done, key=lambda n: (done[n], -n))
        assert row["best_trial"] == best and row["best_valid"] == pytest.approx(done[best])
        assert row["chosen"] == study.trials[best].params
        # the seed runs are the chosen configuration; the table's figures are theirs
        results = [json.loads((Path(d) / "result.json").read_text()) for d in row["run_dirs"]]
        assert sorted(r["seed"] for r in results) == [1, 2]
        for k, v in row["chosen"].items():
            assert all(r["config"][k] == pytest.approx(v) for r in results), k
        for m, (mean, std) in row["test"].items():
            vals = np.array([r["test"][m] for r in results])
            assert mean == pytest.approx(vals.mean()) and std == pytest.approx(vals.std(ddof=1))
    assert [r["model"] for r in saved["models"]] == models
    for m in saved["metrics"]:  # bold = the best mean of the column
        means = {r["model"]: r["test"][m][0] for r in saved["models"]}
        assert {r["model"] for r in saved["models"] if m in r["best"]} == {
            k for k, v in means.items() if v == max(means.values())}


def test_benchmark_tunes_each_model_equally_selects_on_validation_and_reuses(tiny_dir,
                                                                             tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", tiny_dir, "--models", "bpr,lightgcn", "--trials", "3",
            "--seeds", "1,2", "--max-epochs", "3", "--pruner", "none", "--out", out, *FAST]
    res = run_mgnm(*args, "--format", "json")
    assert res.code == 0, res.err
    saved = json.loads(res.out)
    assert saved == json.loads((out / "benchmark.json").read_text())
    assert saved["budget"]["trials"] == 3 and saved["budget"]["max_epochs"] == 3
    _check_selection(out, saved, ["bpr", "lightgcn"], 3)
    for row in saved["models"]:
        # each trial ran at most --max-epochs
        for t in _study(out, row["model"]).get_trials():
            assert t.user_attrs["epochs"] <= 3
    assert "this call: 6 trial(s) run, 4 seed run(s) trained, 0 reused" in res.err
    # a second call reuses everything: no new trial, no new run; the Markdown table
    res = run_mgnm(*args)
    assert res.code == 0, res.err
    assert "this call: 0 trial(s) run, 0 seed run(s) trained, 4 reused" in res.err
    assert all(len(_study(out, m).get_trials()) == 3 for m in ("bpr", "lightgcn"))
    text = res.out
    assert "3 trials of Optuna's TPE sampler (seed 999)" in text
    assert "at most 3 epochs" in text and "no pruning" in text
    assert "the completed trial with the best validation recall@20" in text
    assert "seeds 1, 2" in text
    r20 = {r["model"]: r["test"]["recall@20"] for r in saved["models"]}
    top = max(r20, key=lambda k: r20[k][0])
    row = next(line for line in text.splitlines() if line.startswith(f"| {top} |"))
    assert f"**{r20[top][0]:.4f} ± {r20[top][1]:.4f}**" in row
    chosen = next(r for r in saved["models"] if r["model"] == "lightgcn")["chosen"]
    assert f"n_layers={chosen['n_layers']}" in text


def test_a_killed_benchmark_resumes_where_it_stopped(tiny_dir, tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(tiny_dir), "--models", "bpr,lightgcn", "--trials",
            "3", "--seeds", "1,2", "--max-epochs", "40", "--patience", "40", "--pruner",
            "none", "--out", str(out), "--format", "json", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mgnm.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        # killed while a lightgcn trial trains, after bpr's search has finished
        while not list((out / "tune" / "lightgcn").glob("trials/*/seed*/checkpoint.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stderr.close()
    assert not (out / "benchmark.json").exists()
    assert len(_finished(_study(out, "bpr"))) == 3
    assert len(_finished(_study(out, "lightgcn"))) < 3
    res = run_mgnm(*args)
    assert res.code == 0, res.err
    assert "re-queued 1 trial(s) left running by an interrupted search" in res.err
    saved = json.loads(res.out)
    rows = {r["model"]: r for r in saved["models"]}
    assert rows["bpr"]["trials"]["new"] == 0  # its search was not run again
    assert rows["lightgcn"]["trials"]["new"] >= 1
    _check_selection(out, saved, ["bpr", "lightgcn"], 3)


def test_bad_input_is_one_line(tiny_dir, tmp_path):
    base = ["benchmark", "--data", tiny_dir, "--trials", "1", "--out", tmp_path / "b"]
    assert_user_error(run_mgnm(*base, "--models", "bpr", "--set", "valid_metric=test@20"),
                      "valid_metric='test@20'", "selects on the validation split only")
    assert_user_error(run_mgnm(*base, "--models", "bpr", "--set", "epochs=5"),
                      "epochs=5", "--max-epochs")
    assert_user_error(run_mgnm(*base, "--models", "bpr", "--set", "patience=5"),
                      "--patience")
    assert_user_error(run_mgnm(*base, "--models", "bpr,nope"), "unknown model 'nope'")
    assert_user_error(run_mgnm(*base, "--models", "bpr,bpr"), "'bpr' is given twice")
    assert_user_error(run_mgnm(*base, "--models", "bpr", "--seeds", "x"), "--seeds")
    assert_user_error(run_mgnm(*base, "--models", "bpr", "--set", "reg_wieght=1"),
                      "reg_wieght")
    ids = write_dataset(tmp_path, "ids", modalities={})
    assert_user_error(run_mgnm("benchmark", "--data", ids, "--trials", "1", "--models",
                               "bpr,vbpr", "--out", tmp_path / "c"),
                      "model 'vbpr' needs item features", "has none")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(run_mgnm("benchmark", "--data", tiny_dir, "--trials", "1", "--models",
                               "bpr", "--out", blocker / "b"), str(blocker))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_marks_are_compares_significance_on_the_same_runs(tiny_dir, tmp_path):
    """The † of each cell is mgnm.evaluation.compare's answer for the same seed runs."""
    from mgnm.evaluation.compare import significance_marks

    out = tmp_path / "bench"
    res = run_mgnm("benchmark", "--data", tiny_dir, "--models", "bpr,lightgcn,mgnm",
                   "--trials", "1", "--seeds", "1,2", "--max-epochs", "3", "--pruner", "none",
                   "--out", out, "--format", "json", *FAST)
    assert res.code == 0, res.err
    saved = json.loads(res.out)
    groups = {r["model"]: [Path(d) for d in r["run_dirs"]] for r in saved["models"]}
    expected = significance_marks(groups, saved["metrics"], split="test")
    assert saved["significance"] == expected
    md = (out / "benchmark.md").read_text()
    for r in saved["models"]:
        line = next(x for x in md.splitlines() if x.startswith(f"| {r['model']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        assert [c.endswith("†") for c in cells] == [expected[m][r["model"]]
                                                    for m in saved["metrics"]]
    assert not math.isnan(saved["wall_seconds_this_call"])


def _result(marks):
    from mgnm.benchmark.run import BenchmarkResult, Budget, ModelOutcome
    from mgnm.experiments.grid import Selection

    def outcome(model, r20, n20):
        row = Selection(model, model, {}, valid={"recall@20": (r20, 0.0), "ndcg@20": (n20, 0.0)},
                        test={"recall@20": (r20, 0.01), "ndcg@20": (n20, 0.02)},
                        seeds=[1, 2], seconds_per_epoch=1.0)
        return ModelOutcome(model, {"learning_rate": 0.001234, "n_layers": 2}, 0, r20,
                            {"complete": 3, "pruned": 1, "failed": 0, "total": 4}, row=row,
                            compute_seconds=12.4)

    return BenchmarkResult("DATA", Path("."), Budget(4, 10, 5, (1, 2)), "recall@20",
                           [outcome("a", 0.30, 0.10), outcome("b", 0.20, 0.15)], 1.0,
                           marks=marks, significance_note=None if marks else "why not")


def test_tables_bold_the_best_and_mark_what_compare_marked():
    from mgnm.benchmark.table import render

    res = _result({"recall@20": {"a": False, "b": True}, "ndcg@20": {"a": False, "b": False}})
    md = render(res, "md")
    assert "| a | **0.3000 ± 0.0100** | 0.1000 ± 0.0200 |" in md
    assert "| b | 0.2000 ± 0.0100† | **0.1500 ± 0.0200** |" in md
    assert "| a | learning_rate=0.00123, n_layers=2 | 0.3000 (#0) | 4 (1 pruned, 0 failed) | 12 |" \
        in md
    assert "4 trials" in md and "seeds 1, 2" in md and "†: differs from the column's best" in md
    tex = render(res, "latex")
    assert r"a & \textbf{0.3000 $\pm$ 0.0100} & 0.1000 $\pm$ 0.0200 \\" in tex
    assert r"b & 0.2000 $\pm$ 0.0100$^\dagger$ & \textbf{0.1500 $\pm$ 0.0200} \\" in tex
    rows = list(__import__("csv").DictReader(render(res, "csv").splitlines()))
    assert [(r["test_recall@20_best"], r["test_recall@20_differs"]) for r in rows] == [
        ("1", "0"), ("0", "1")]
    unmarked = render(_result(None), "md")
    assert "†" not in unmarked and "No significance marks (why not)" in unmarked
    assert json.loads(render(_result(None), "json"))["models"][1]["best"] == ["ndcg@20"]
