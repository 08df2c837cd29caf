"""`mgnm tune`: space files, pruning on the validation curve, selection on validation only,
a resumable study (local backend; the Ray backend is in test_ray_backend.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import need  # noqa: E402

from mgnm.errors import ConfigError
from mgnm.experiments.grid import plan_runs

optuna = need("optuna", extra="tune")

from clitools import run_mgnm  # noqa: E402

from mgnm.tune.search import run_trial, tune  # noqa: E402
from mgnm.tune.space import load_space, parse_space  # noqa: E402

FAST = {"batch_size": 64, "device": "cpu"}


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_space_file_checks_name_the_file_and_key(tmp_path):
    bad = write_space(tmp_path / "s.yaml", "n_layer: {low: 1, high: 3}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: unknown config key 'n_layer' \(did you mean "
                                          r"'n_layers'\?\)"):
        load_space(bad, "lightgcn", {})
    with pytest.raises(ConfigError, match="key 'lr', low: expected a number"):
        parse_space({"lr": {"low": "x", "high": 1}}, "f.yaml")
    with pytest.raises(ConfigError, match="key 'lr': unknown field 'hi'"):
        parse_space({"lr": {"low": 1, "hi": 2}}, "f.yaml")
    with pytest.raises(ConfigError, match="key 'lr': need low < high"):
        parse_space({"lr": {"low": 0, "high": 1, "log": True}}, "f.yaml")
    [p] = parse_space({"n": {"low": 1, "high": 7, "step": 3}}, "f.yaml")
    assert p.is_int and p.grid_values() == [1, 4, 7]
    [q] = parse_space({"lr": {"low": "1e-3", "high": 0.01}}, "f.yaml")  # YAML 1.1 string
    assert q.low == 1e-3 and not q.is_int


def test_conditional_keys_follow_earlier_values():
    params = parse_space({"a": {"choices": [True, False]},
                          "b": {"choices": [1, 2], "when": {"a": True}}}, "f.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    from mgnm.tune.space import suggest_all

    seen = []
    for _ in range(12):
        t = study.ask()
        seen.append(suggest_all(t, params, {}))
        study.tell(t, 0.0)
    assert all(("b" in s) == s["a"] for s in seen)
    assert {s["a"] for s in seen} == {True, False}


class FakeTrial:
    """Prunes when told to at a given epoch; records what was reported."""

    def __init__(self, prune_at: int) -> None:
        self.prune_at, self.reported = prune_at, []

    def report(self, value: float, step: int) -> None:
        self.reported.append((step, value))

    def should_prune(self) -> bool:
        return self.reported[-1][0] >= self.prune_at


def test_trials_report_validation_each_epoch_and_stop_when_pruned(tiny_dir, tmp_path):
    [spec] = plan_runs("bpr", {"data": str(tiny_dir), "epochs": 6, **FAST}, [{}], [1], tmp_path)
    trial = FakeTrial(prune_at=2)
    res = run_trial(trial, spec)
    assert res["state"] == "pruned"
    log = [json.loads(x) for x in (spec.run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # training stopped at the pruned epoch
    assert trial.reported == [(r["epoch"], r["valid"]["recall@20"]) for r in log]
    assert not (spec.run_dir / "result.json").exists()
    # the same config again (a re-queued trial): it resumes at epoch 3, not from 0
    again = FakeTrial(prune_at=99)
    res = run_trial(again, spec)
    assert res["state"] == "complete" and [s for s, _ in again.reported] == [3, 4, 5, 6]


def test_tune_selects_on_validation_reports_test_once_and_resumes(tiny_dir, tmp_path):
    space = write_space(tmp_path / "space.yaml",
                        "learning_rate: {low: 1.0e-4, high: 5.0e-2, log: true}\n"
                        "reg_weight: [0.0, 0.01]\n")
    out = tmp_path / "search"
    args = ["tune", "lightgcn", "--data", tiny_dir, "--space", space, "--sampler", "random",
            "--pruner", "none", "--out", out, "--set", "epochs=3", "--set", "batch_size=64",
            "--set", "device=cpu"]
    proc = run_mgnm(*args, "--trials", "3")
    assert proc.code == 0, proc.err
    saved = json.loads((out / "tune.json").read_text())
    assert saved["counts"] == {"complete": 3, "pruned": 0, "failed": 0, "total": 3, "new": 3}
    # the best trial is the best validation figure among the trials' own results
    results = {t["number"]: json.loads((Path(t["run_dir"]) / "result.json").read_text())
               for t in saved["trials"]}
    best_no = max(results, key=lambda n: (results[n]["valid"]["recall@20"], -n))
    best = saved["best"]
    assert best["number"] == best_no
    assert best["valid"]["recall@20"] == pytest.approx(results[best_no]["valid"]["recall@20"])
    assert best["test"]["recall@20"] == pytest.approx(results[best_no]["test"]["recall@20"])
    assert f"validation recall@20: {best['valid']['recall@20']:.4f}" in proc.out
    assert f"test recall@20: {best['test']['recall@20']:.4f}" in proc.out
    # a second call continues the stored study: only the missing trials run
    proc = run_mgnm(*args, "--trials", "5")
    assert proc.code == 0, proc.err
    assert "trials: 5 complete, 0 pruned, 0 failed (2 run now)" in proc.out
    # another space in the same directory is refused, in one line
    other = write_space(tmp_path / "other.yaml", "learning_rate: [0.1, 0.2]\n")
    proc = run_mgnm(*[other if a == space else a for a in args], "--trials", "1")
    assert proc.code == 2
    assert "holds a search of another model, data, space or base config" in proc.the_error()


def test_an_interrupted_trial_is_requeued_and_resumes(tiny_dir, tmp_path):
    space = write_space(tmp_path / "space.yaml", "learning_rate: [0.01]\n")
    out = tmp_path / "search"
    base = {"epochs": 2, **FAST}
    tune("bpr", tiny_dir, space, 1, out, base=base, sampler="grid", pruner="none")
    import optuna as o

    study = o.load_study(study_name="mgnm-tune", storage=f"sqlite:///{out / 'study.db'}")
    orphan = study.ask({"learning_rate": o.distributions.CategoricalDistribution([0.01])})
    assert orphan.number == 1  # left RUNNING, as by a driver that was killed
    res = tune("bpr", tiny_dir, space, 2, out, base=base, sampler="random", pruner="none")
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[1] == "FAIL" and res.counts["complete"] == 2
    requeued = [t for t in study.get_trials() if t.user_attrs.get("requeued_from") == 1]
    assert len(requeued) == 1 and requeued[0].params == {"learning_rate": 0.01}
    assert requeued[0].user_attrs["reused"] is True  # same config: the finished run is reused


def test_ctrl_c_says_to_rerun_tune_and_leaves_the_trial_to_requeue(tiny_dir, tmp_path):
    """Ctrl+C during a trial: one line telling to run `mgnm tune` again (not `train
    --resume`), and the trial stays RUNNING in the study, which the rerun re-queues."""
    import os
    import signal
    import subprocess
    import sys
    import time

    space = write_space(tmp_path / "space.yaml", "learning_rate: [0.01]\n")
    out = tmp_path / "search"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgnm.cli", "tune", "bpr", "--data", str(tiny_dir), "--space",
         str(space), "--trials", "1", "--sampler", "grid", "--pruner", "none", "--out", str(out),
         "--set", "epochs=100000", "--set", "patience=100000", "--set", "batch_size=64"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("trials/*/seed*/checkpoint.pt")):  # a trial is training
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == ("interrupted (run the same `mgnm tune` command again to continue "
                           "the search: the interrupted trial is re-queued and resumes from "
                           "its checkpoint)")
    study = optuna.load_study(study_name="mgnm-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]


def test_without_space_the_models_shipped_space_is_searched(tiny_dir, tmp_path):
    from mgnm.tune.spaces import space_path

    out = tmp_path / "search"
    proc = run_mgnm("tune", "bpr", "--data", tiny_dir, "--trials", "2", "--sampler", "random",
                    "--pruner", "none", "--out", out, "--set", "epochs=2",
                    "--set", "batch_size=64", "--set", "device=cpu")
    assert proc.code == 0, proc.err
    import yaml

    shipped = set(yaml.safe_load(space_path("bpr").read_text()))
    trials = json.loads((out / "tune.json").read_text())["trials"]
    assert len(trials) == 2
    for t in trials:
        assert set(t["params"]) == shipped
    proc = run_mgnm("tune", "nosuchmodel", "--data", tiny_dir, "--trials", "1", "--out", out)
    assert proc.code == 2
    assert "nosuchmodel" in proc.the_error()
