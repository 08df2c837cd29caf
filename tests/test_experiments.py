"""Experiment plans, selection on validation only, resumable sweeps and their tables."""

from __future__ import annotations

import json

import pytest

from mgnm.cli import main
from mgnm.errors import ConfigError
from mgnm.experiments import paper
from mgnm.experiments.grid import RunOutcome, RunSpec, aggregate, expand_grid, plan_runs, select_best
from mgnm.experiments.runners import run_all


def test_expand_grid_is_the_cartesian_product():
    g = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(g) == 6 and {"a": 2, "b": "z"} in g
    assert expand_grid({}) == [{}]
    with pytest.raises(ConfigError, match="grid key 'a'"):
        expand_grid({"a": 3})


def test_plan_validates_every_config_before_running(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'n_layer'"):
        plan_runs("lightgcn", {}, [{"n_layer": 2}], [1], tmp_path)


def fake(name, seed, valid, test, model="bpr"):
    spec = RunSpec(name, {"model": model, "seed": seed}, None, name)  # type: ignore[arg-type]
    return RunOutcome(spec, {"valid": {"recall@20": valid}, "test": {"recall@20": test},
                             "train_seconds_per_epoch": 1.0})


def test_selection_uses_validation_mean_never_test():
    outcomes = [fake("a", 1, 0.30, 0.10), fake("a", 2, 0.20, 0.12),  # valid mean 0.25
                fake("b", 1, 0.26, 0.50), fake("b", 2, 0.26, 0.50)]  # valid mean 0.26
    rows = aggregate(outcomes)
    best = select_best(rows)
    assert best.name == "b" and best.candidates == 2
    worse_valid_better_test = [fake("a", 1, 0.3, 0.9), fake("b", 1, 0.4, 0.1)]
    assert select_best(aggregate(worse_valid_better_test)).name == "b"
    a = next(r for r in rows if r.name == "a")
    assert a.test["recall@20"][0] == pytest.approx(0.11)
    assert a.test["recall@20"][1] == pytest.approx(0.0141421, rel=1e-4)  # sample std


def test_component_ablation_plan_covers_the_issue(tiny_dir, tmp_path):
    _, specs = paper.component_ablation(tiny_dir, tmp_path, [1, 2], {})
    labels = sorted({s.label for s in specs})
    assert labels == sorted(["full", "w/o DDR (beta = delta = 0)", "w/o purifier", "w/o image",
                             "w/o text", "w/o global (alpha = 0)"])
    assert len(specs) == 12
    wo_ddr = next(s for s in specs if s.label.startswith("w/o DDR"))
    assert wo_ddr.config["ddr_weight"] == 0 and wo_ddr.config["ddr_mm_weight"] == 0


def test_sensitivity_plan_is_the_papers_grid(tiny_dir, tmp_path):
    _, specs = paper.sensitivity(tiny_dir, tmp_path, [1], {})
    pts = {(s.config["ddr_weight"], s.config["ddr_mm_weight"]) for s in specs}
    assert {(b, 1e-4) for b in paper.BETA_GRID} <= pts
    assert {(1e-4, d) for d in paper.DELTA_GRID} <= pts
    assert len(specs) == len(pts) == 9  # (1e-4, 1e-4) appears once


def test_table1_reference_grid_sizes(tiny_dir, tmp_path):
    _, specs = paper.table1(tiny_dir, tmp_path, [1], {}, ["bpr", "lightgcn"], use_grid=True)
    assert len(specs) == 7 + 20


def test_sweep_resumes_and_writes_tables(tiny_dir, tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "modalities", "-d", str(tiny_dir), "--seeds", "1,2", "--out", str(out),
            "--set", "epochs=2", "--set", "batch_size=64", "--set", "device=cpu"]
    assert main(args) == 0
    text = (out / "summary.md").read_text()
    assert "| MGNM |" in text and "| w/o image |" in text and "| w/o text |" in text
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["seeds"] == [1, 2] for r in rows)
    [first] = out.glob("mgnm_modalities=image+text-*/seed1/result.json")
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # everything finished: nothing is retrained
    assert first.stat().st_mtime_ns == stamp
    assert "6 runs: 0 trained, 6 reused" in capsys.readouterr().err


def test_run_all_records_failures_and_goes_on(tiny_dir, tmp_path):
    good = plan_runs("bpr", {"data": str(tiny_dir), "epochs": 1}, [{}], [1], tmp_path / "g")
    bad = plan_runs("bpr", {"data": str(tmp_path / "missing"), "epochs": 1}, [{}], [1],
                    tmp_path / "b")
    outcomes = run_all(bad + good)
    assert outcomes[0].error and "does not exist" in outcomes[0].error
    assert outcomes[1].result is not None


def test_table1_starts_each_model_from_its_dataset_preset(tiny_dir, tmp_path):
    _, specs = paper.table1(tiny_dir, tmp_path, [1], {"epochs": 3}, ["lattice", "bpr", "vbpr"],
                            preset_suffix="tiktok")
    by_model = {s.config["model"]: s.config for s in specs}
    assert by_model["lattice"]["learning_rate"] == 5e-4 and by_model["lattice"]["reg_weight"] == 0
    assert by_model["vbpr"]["reg_weight"] == 1e-4
    assert all(c["epochs"] == 3 for c in by_model.values())
