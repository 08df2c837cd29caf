"""Experiments and tuning on Ray: a local Ray (2 CPUs, loopback) shared by these tests."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import need  # noqa: E402

from mgnm.experiments import paper
from mgnm.experiments.report import best_per_model, markdown
from mgnm.experiments.runners import run_all
from mgnm.train.trainer import Callback

ray = need("ray", extra="ray")

BASE = {"epochs": 4, "batch_size": 64, "device": "cpu"}


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (starting Ray takes seconds), shut down at the end. Ray
    gives its raylet a fixed 30 s to register; on a saturated machine that can pass, so a
    failed start is tried again (three attempts in all)."""
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1", logging_level="ERROR")
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    # workers unpickle this module's callbacks by value (tests/ is not on their path)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def table(outcomes) -> str:
    """Table I's Markdown without the timing row (seconds differ between any two runs)."""
    text = markdown(best_per_model(outcomes), transpose=True)
    return "\n".join(x for x in text.splitlines() if not x.startswith("| s/epoch"))


def test_ray_gives_the_local_table_and_a_second_call_reuses_every_run(ray_address, tiny_dir,
                                                                      tmp_path):
    def plan(out):
        return paper.table1(tiny_dir, out, [1, 2], BASE, ["bpr", "lightgcn"])[1]

    local = run_all(plan(tmp_path / "local"))
    on_ray = run_all(plan(tmp_path / "ray"), backend="ray")
    assert all(o.result and not o.reused for o in on_ray)
    assert table(on_ray) == table(local)
    for a, b in zip(local, on_ray, strict=True):
        assert (a.result["valid"], a.result["test"]) == (b.result["valid"], b.result["test"])
    again = run_all(plan(tmp_path / "ray"), backend="ray")
    assert all(o.reused for o in again) and table(again) == table(local)


class KillOnce(Callback):
    """SIGKILLs its own process after epoch ``at``, once (a marker file remembers); records
    the epoch each attempt started from."""

    def __init__(self, at: int, marker: Path, starts: Path) -> None:
        self.at, self.marker, self.starts = at, marker, starts

    def on_start(self, info) -> None:
        with open(self.starts, "a") as f:
            f.write(f"{info['start_epoch']}\n")

    def on_epoch(self, record) -> None:
        if record.epoch == self.at and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_retried_and_resumes_to_the_uninterrupted_result(ray_address,
                                                                             tiny_dir, tmp_path):
    def plan(out):
        return paper.table1(tiny_dir, out, [3], BASE, ["lightgcn"])[1]

    [plain] = run_all(plan(tmp_path / "plain"))
    marker, starts = tmp_path / "killed", tmp_path / "starts"
    [killed] = run_all(plan(tmp_path / "killed-run"), backend="ray",
                       callbacks=[KillOnce(2, marker, starts)])
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert starts.read_text().split() == ["0", "2"]  # the retry resumed after epoch 2
    assert killed.error is None
    for key in ("valid", "test", "best_epoch", "epochs_run"):
        assert killed.result[key] == plain.result[key]


def test_cli_on_a_running_cluster_writes_the_local_table(ray_address, tiny_dir, tmp_path):
    from clitools import run_mgnm

    args = ["experiment", "table1", "--models", "bpr", "-d", tiny_dir, "--seeds", "5",
            "--set", "epochs=3", "--set", "batch_size=64", "--set", "device=cpu"]
    local = run_mgnm(*args, "--out", tmp_path / "local")
    on_ray = run_mgnm(*args, "--out", tmp_path / "ray", "--backend", "ray",
                      "--address", ray_address)
    assert local.code == 0 and on_ray.code == 0, on_ray.err
    rows = [json.loads((tmp_path / d / "summary.json").read_text())["rows"]
            for d in ("local", "ray")]
    assert [(r["valid"], r["test"]) for r in rows[0]] == [(r["valid"], r["test"]) for r in rows[1]]
    assert "(ray backend)" in on_ray.err and "1 run: 1 trained, 0 reused" in on_ray.err


def test_tune_on_ray_reports_through_the_shared_storage(ray_address, tiny_dir, tmp_path):
    need("optuna", extra="tune")
    from mgnm.tune.search import tune

    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: [0.05, 0.0001]\n")
    res = tune("lightgcn", tiny_dir, space, 2, tmp_path / "t", sampler="grid", pruner="none",
               backend="ray", base={"epochs": 3, "batch_size": 64, "device": "cpu"})
    assert res.counts["complete"] == 2
    import optuna

    study = optuna.load_study(study_name="mgnm-tune",
                              storage=f"sqlite:///{tmp_path / 't' / 'study.db'}")
    for t in study.get_trials():
        log = [json.loads(x) for x in (Path(t.user_attrs["run_dir"]) / "log.jsonl").read_text()
               .splitlines()]
        # every epoch's validation figure reached the study from the Ray worker
        assert t.intermediate_values == {r["epoch"]: r["valid"]["recall@20"] for r in log}
    best = max(study.get_trials(), key=lambda t: t.value)
    assert res.best["number"] == best.number
