"""`mgnm experiment` and `mgnm plot` as a user meets them: the installed command in a
subprocess (exit status, one-line messages, no traceback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clitools import run_mgnm
from conftest import need

from mgnm.config import resolve_config
from mgnm.train.trainer import fit

FAST = ["--set", "batch_size=64", "--set", "device=cpu"]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_changed_config_is_a_new_run_and_the_same_config_is_reused(tiny_dir, tmp_path):
    out = tmp_path / "exp"
    first = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--out", out,
                     "--set", "epochs=1", *FAST)
    assert first.code == 0, first.err
    second = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--out", out,
                      "--set", "epochs=4", "--set", "learning_rate=0.01", *FAST)
    assert second.code == 0, second.err
    assert "1 run: 1 trained, 0 reused" in second.err
    # the second table holds the second config's result, computed here independently
    ref = fit(resolve_config({"model": "bpr", "data": str(tiny_dir), "epochs": 4,
                              "learning_rate": 0.01, "batch_size": 64, "device": "cpu"}))
    row = summary(out)["rows"][0]
    assert row["test"]["recall@20"][0] == pytest.approx(ref.test["recall@20"], abs=1e-12)
    assert row["settings"]["epochs"] == 4
    assert f"| recall@20 | {ref.test['recall@20']:.4f} |" in second.out
    runs = sorted(p.name for p in (out / "bpr").iterdir())
    assert len(runs) == 2 and all(r.startswith("bpr-") for r in runs)
    # the first config again: nothing is trained, its old run is reused
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("bpr/*/seed999/result.json")}
    third = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--out", out,
                     "--set", "epochs=1", *FAST)
    assert third.code == 0 and "1 run: 0 trained, 1 reused" in third.err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert summary(out)["rows"][0]["settings"]["epochs"] == 1


def test_selection_and_tables_follow_valid_metric_and_topk(tiny_dir, tmp_path):
    out = tmp_path / "grid"
    proc = run_mgnm("experiment", "grid", "-m", "lightgcn", "-d", tiny_dir, "--out", out,
                    "--grid", "learning_rate=[0.05,0.0001]", "--set", "epochs=3",
                    "--set", "topk=[5,10]", "--set", "valid_metric=ndcg@10", *FAST)
    assert proc.code == 0, proc.err
    head = next(x for x in proc.out.splitlines() if x.startswith("| setting"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[1:6] == ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "valid ndcg@10"]
    # the winner, recomputed from the run directories' own results
    results = [json.loads(p.read_text()) for p in out.glob("*/seed999/result.json")]
    assert len(results) == 2
    best = max(results, key=lambda r: r["valid"]["ndcg@10"])
    assert f"selected on validation ndcg@10: lightgcn_learning_rate={best['config']['learning_rate']:g}" \
        in proc.out


def test_failed_runs_exit_2_and_are_named(tiny_dir, tmp_path):
    out = tmp_path / "bad"
    proc = run_mgnm("experiment", "grid", "-m", "bpr", "-d", tiny_dir, "--out", out,
                    "--grid", "learning_rate=[0.001,1e30]", "--set", "epochs=1", "--jobs", "2",
                    *FAST)
    assert proc.code == 2
    assert proc.the_error() == ("error: 1 of 2 runs failed (listed above; finished runs are "
                                "kept, run the command again to retry the others)")
    failed = summary(out)["failed"]
    assert len(failed) == 1 and "learning_rate=1e30" in failed[0]["run_dir"]
    assert "loss became nan" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert f"failed {failed[0]['run_dir']}: the loss became nan" in proc.err
    none = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tmp_path / "nowhere",
                    "--out", tmp_path / "none", "--set", "epochs=1")
    assert none.code == 2 and none.the_error().startswith("error: 1 of 1 runs failed")
    assert "nowhere" in none.err


def test_os_errors_are_one_line(tiny_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tiny_dir,
                    "--out", blocker / "exp")
    assert proc.code == 2
    assert proc.the_error() == (f"error: {blocker / 'exp'}: cannot use as experiment directory "
                                f"(Not a directory)")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("plot")
    data = write_dataset(root)
    run = root / "run"
    fit(resolve_config({"model": "bpr", "data": str(data), "epochs": 3, "batch_size": 64,
                        "device": "cpu", "topk": [5, 10], "valid_metric": "recall@10"}),
        run_dir=run)
    return run


def test_plot_errors_and_a_cut_log(finished_run, tmp_path):
    need("matplotlib", extra="plot")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_mgnm("plot", finished_run, "-o", blocker / "x.png")
    assert proc.code == 2
    assert proc.the_error() == (f"error: {blocker}: cannot write the plot ({blocker} is a file, "
                                f"not a directory)")
    proc = run_mgnm("plot", finished_run, "--metric", "foo", "-o", tmp_path / "x.png")
    assert proc.code == 2
    line = proc.the_error()
    assert line.startswith(f"error: metric 'foo' is not in {finished_run / 'log.jsonl'}; "
                           f"available: ")
    assert "recall@10" in line and "recall@20" not in line
    # a kill cut the last line: it is skipped with a warning, the plot is written
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (finished_run / "log.jsonl").read_text().splitlines()
    (cut / "log.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    out = tmp_path / "new" / "dir" / "curves.png"  # missing directories are created
    proc = run_mgnm("plot", cut, "--metric", "recall@10", "-o", out)
    assert proc.code == 0, proc.err
    assert f"warning: {cut / 'log.jsonl'}, line 3: cut off" in proc.err
    assert out.stat().st_size > 0
    # a malformed line that is not the last is an error naming the line
    (cut / "log.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    proc = run_mgnm("plot", cut, "-o", out)
    assert proc.code == 2
    assert proc.the_error().startswith(f"error: {cut / 'log.jsonl'}, line 2: not an epoch record")


def test_missing_extras_are_named_in_one_line(tiny_dir, tmp_path):
    block = tmp_path / "block"
    for mod in ("ray", "optuna"):  # stand-ins that fail to import, as when not installed
        (block / mod).mkdir(parents=True)
        (block / mod / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": str(block)}
    proc = run_mgnm("experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--out",
                    tmp_path / "exp", "--backend", "ray", "--set", "epochs=1", env=env)
    assert proc.code == 2
    assert proc.the_error() == "error: the Ray backend needs Ray: pip install 'mgnm[ray]'"
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: [0.01]\n")
    proc = run_mgnm("tune", "bpr", "--data", tiny_dir, "--space", space, "--trials", "1",
                    "--out", tmp_path / "t", env=env)
    assert proc.code == 2
    assert proc.the_error() == "error: mgnm tune needs Optuna: pip install 'mgnm[tune]'"


def test_sweeps_drop_finished_checkpoints_and_jobs_set_threads(tiny_dir, tmp_path):
    args = ["experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--seeds", "1,2",
            "--set", "epochs=2", *FAST]
    proc = run_mgnm(*args, "--out", tmp_path / "a", "--jobs", "2")
    assert proc.code == 0, proc.err
    runs = sorted(p for p in (tmp_path / "a").glob("bpr/*/seed*") if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "result.json").is_file() and (run / "best.pt").is_file()
        assert not (run / "checkpoint.pt").exists()  # the default: not kept
        config = json.loads((run / "result.json").read_text())["config"]
        assert config["threads"] == max(1, (os.cpu_count() or 1) // 2)
        assert config["keep_checkpoint"] is False
    proc = run_mgnm(*args, "--out", tmp_path / "b", "--keep-checkpoints")
    assert proc.code == 0, proc.err
    kept = sorted((tmp_path / "b").glob("bpr/*/seed*/checkpoint.pt"))
    assert len(kept) == 2
    # the same runs: keep_checkpoint and threads say how to run, not what; they key no run
    assert [p.parent.parent.name for p in kept] == [p.parent.name for p in runs]
    assert "--keep-checkpoints / --no-keep-checkpoints" in run_mgnm("experiment", "--help").out
