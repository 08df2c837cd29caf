"""Experiment tracking with the real libraries: runs sent to MLflow (queried back with
``MlflowClient``) and TensorBoard (read back with its event accumulator), live and from
their files, equal to what the run directory records; a tracker that fails never stops a
run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import need  # noqa: E402

mlflow = need("mlflow", "tensorboard", extra="track")

from clitools import assert_user_error, run_mgnm  # noqa: E402
from conftest import write_dataset  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from mgnm.experiments.grid import plan_runs  # noqa: E402
from mgnm.runs import read_log  # noqa: E402
from mgnm.track import Tracking, TrackingWarning, push  # noqa: E402
from mgnm.train.trainer import fit  # noqa: E402

FAST = {"model": "lightgcn", "epochs": 3, "batch_size": 64, "device": "cpu", "patience": 5}


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A finished run trained without any tracker (to be pushed afterwards)."""
    run = tmp_path_factory.mktemp("untracked") / "lightgcn-s1"
    fit({**FAST, "data": str(data_dir), "seed": 1}, run_dir=run)
    return run


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made once (creating them takes seconds);
    tests start from a copy."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def store_in(base: Path, empty_store: Path) -> MlflowClient:
    """``base/mlflow.db`` (the default store of runs under ``base``), from the template."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, base / "mlflow.db")
    return MlflowClient(f"sqlite:///{base / 'mlflow.db'}")


def runs_of(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def expected_params(run_dir: Path) -> dict[str, str]:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def expected_epochs(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``metric -> [(epoch, value)]`` straight from log.jsonl."""
    out: dict[str, list[tuple[int, float]]] = {}
    for rec in read_log(run_dir):
        e = rec["epoch"]
        pairs = [(f"train/{k}", v) for k, v in rec["losses"].items()]
        pairs += [(f"valid/{k.replace('@', '_at_')}", v) for k, v in rec["valid"].items()]
        pairs += [("seconds/train", rec["train_seconds"]), ("seconds/eval", rec["eval_seconds"]),
                  ("lr", rec["lr"])]
        for k, v in pairs:
            out.setdefault(k, []).append((e, v))
    return out


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_mlflow_run_equals_files(client: MlflowClient, run, run_dir: Path) -> None:
    rid = run.info.run_id
    assert run.data.params == expected_params(run_dir)
    want = expected_epochs(run_dir)
    for key, points in want.items():
        assert history(client, rid, key) == points, key
    result = json.loads((run_dir / "result.json").read_text())
    for k, v in result["test"].items():  # once, at the best epoch
        assert history(client, rid, f"test/{k.replace('@', '_at_')}") == \
            [(result["best_epoch"], v)]
    data = json.loads((run_dir / "data.json").read_text())
    digest = hashlib.sha256(json.dumps(data["files"], sort_keys=True).encode()).hexdigest()[:12]
    tags = run.data.tags
    assert (tags["model"], tags["seed"], tags["dataset"]) == (result["model"],
                                                              str(result["seed"]),
                                                              result["dataset"])
    assert tags["data_fingerprint"] == digest
    assert tags["mgnm_version"] == result["mgnm_version"]
    assert run.info.status == "FINISHED"
    arts = sorted(a.path for a in client.list_artifacts(rid))
    assert arts == ["config.yaml", "curves.png", "result.json"]


def counts(client: MlflowClient, experiment: str) -> dict:
    """Everything a push could add: runs, metric points, params, artefacts."""
    out = {}
    for run in runs_of(client, experiment):
        rid = run.info.run_id
        out[rid] = (sum(len(client.get_metric_history(rid, k)) for k in run.data.metrics),
                    len(run.data.params), len(client.list_artifacts(rid)), run.info.status)
    return out


# ------------------------------------------------------------------ MLflow
def test_a_run_sent_live_equals_its_files_and_a_push_adds_nothing(tmp_path, data_dir,
                                                                  empty_store):
    base = tmp_path / "runs"
    client = store_in(base, empty_store)
    run_dir = base / "lightgcn-s2"
    fit({**FAST, "data": str(data_dir), "seed": 2}, run_dir=run_dir,
        callbacks=[Tracking("mlflow", base)])
    [run] = runs_of(client, "runs")  # one experiment named after the folder
    assert run.info.run_name == "lightgcn-s2"
    assert_mlflow_run_equals_files(client, run, run_dir)
    before = counts(client, "runs")
    report = push([run_dir], "mlflow")
    assert report.counts == {"new": 0, "updated": 0, "unchanged": 1, "failed": 0}
    assert counts(client, "runs") == before


def test_a_push_after_the_fact_equals_the_files_and_pushing_twice_adds_nothing(
        tmp_path, finished_run, empty_store):
    base = tmp_path / "exp"
    shutil.copytree(finished_run, base / "lightgcn" / "seed1")
    client = store_in(base, empty_store)
    report = push([base], "mlflow")
    assert report.counts["new"] == 1
    [run] = runs_of(client, "exp")
    assert run.info.run_name == "lightgcn/seed1"
    assert_mlflow_run_equals_files(client, run, base / "lightgcn" / "seed1")
    before = counts(client, "exp")
    again = push([base / "lightgcn"], "mlflow", uri=f"sqlite:///{base / 'mlflow.db'}",
                 experiment="exp")
    assert again.counts == {"new": 0, "updated": 0, "unchanged": 1, "failed": 0}
    assert counts(client, "exp") == before


def test_a_tracker_failing_mid_run_warns_once_and_a_push_completes_the_run(
        tmp_path, data_dir, empty_store, monkeypatch):
    from mgnm.track import live

    real = live.make_target

    def flaky(kind, uri, experiment):  # the server goes away after the first epoch
        target = real(kind, uri, experiment)
        opener = target.open

        def open_run(spec, live, fresh=False):
            handle = opener(spec, live, fresh)
            send = handle.log_epochs

            def log_epochs(records):
                if handle.epochs_logged >= 1:
                    raise ConnectionError("HTTPConnectionPool: Max retries exceeded "
                                          "([Errno 111] Connection refused)")
                send(records)

            handle.log_epochs = log_epochs
            return handle

        target.open = open_run
        return target

    monkeypatch.setattr(live, "make_target", flaky)
    base = tmp_path / "runs"
    client = store_in(base, empty_store)
    run_dir = base / "r"
    with pytest.warns(TrackingWarning) as caught:
        result = fit({**FAST, "data": str(data_dir), "seed": 3}, run_dir=run_dir,
                     callbacks=[Tracking("mlflow", base)])
    assert len(caught) == 1
    assert "(Connection refused)" in str(caught[0].message)
    assert f"mgnm track {base} --to mlflow" in str(caught[0].message)
    assert result.epochs_run == 3 and (run_dir / "result.json").is_file()
    [run] = runs_of(client, "runs")
    assert history(client, run.info.run_id, "valid/recall_at_20") == \
        expected_epochs(run_dir)["valid/recall_at_20"][:1]
    monkeypatch.setattr(live, "make_target", real)
    assert push([run_dir], "mlflow").counts["updated"] == 1
    [run] = runs_of(client, "runs")
    assert_mlflow_run_equals_files(client, run, run_dir)


def test_tune_trials_are_child_runs_of_the_study_with_their_pruning(tmp_path, data_dir,
                                                                     empty_store):
    from mgnm.tune.search import run_trial, tune

    out = tmp_path / "search"
    client = store_in(out, empty_store)
    space = tmp_path / "space.yaml"
    space.write_text("n_layers: [1, 2]\n")
    base = {k: v for k, v in FAST.items() if k != "model"}
    res = tune("lightgcn", data_dir, space, 2, out, base={**base, "tracking": "mlflow"},
               sampler="grid", pruner="none")
    assert res.counts["complete"] == 2
    runs = {r.data.tags.get("mgnm.kind", "trial"): r for r in runs_of(client, "search")}
    study = runs["study"]
    trials = [r for r in runs_of(client, "search") if r.data.tags.get("mgnm.kind") != "study"]
    assert len(trials) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study.info.run_id}
    assert sorted(r.data.params["n_layers"] for r in trials) == ["1", "2"]
    assert study.data.tags["trials_complete"] == "2" and study.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(study.info.run_id)] == ["tune.json"]
    for r in trials:
        assert_mlflow_run_equals_files(client, r, Path(r.data.tags["mgnm.run_dir"]))

    # a trial the pruner stops: a child run ended as pruned, with the epoch it stopped at
    class PruneAt2:
        def report(self, value, step):
            self.step = step

        def should_prune(self):
            return self.step >= 2

    tracker = Tracking("mlflow", out)
    tracker.open_study(out)
    [spec] = plan_runs("lightgcn", {**base, "data": str(data_dir), "n_layers": 3}, [{}], [1],
                       out / "trials")
    assert run_trial(PruneAt2(), spec, [tracker])["state"] == "pruned"
    pruned = client.search_runs([study.info.experiment_id],
                                filter_string="tags.`mgnm.state` = 'pruned'")
    assert len(pruned) == 1
    p = pruned[0]
    assert p.info.status == "KILLED" and p.data.tags["mlflow.parentRunId"] == study.info.run_id
    assert p.data.tags["mgnm.stopped"] == "pruned after epoch 2"
    assert [s for s, _ in history(client, p.info.run_id, "valid/recall_at_20")] == [1, 2]
    push([out], "mlflow")  # the study's run, taken up again above, is finished again
    before = counts(client, "search")  # the whole search pushed again: nothing new
    assert push([out], "mlflow").counts == {"new": 0, "updated": 0, "unchanged": 3,
                                            "failed": 0}
    assert counts(client, "search") == before


def test_an_experiment_tracks_its_runs_and_a_rerun_adds_only_the_new_ones(tmp_path, data_dir,
                                                                          empty_store):
    from mgnm.experiments.sweep import run_experiment

    out = tmp_path / "table1"
    client = store_in(out, empty_store)
    base = {k: v for k, v in FAST.items() if k != "model"} | {"tracking": "mlflow"}
    kw = {"models": ["lightgcn"], "stream": io.StringIO()}
    run_experiment("table1", data_dir, out, [1], base, **kw)
    before = counts(client, "table1")
    res = run_experiment("table1", data_dir, out, [1, 2], base, **kw)
    assert [o.reused for o in res.outcomes] == [True, False]
    runs = {r.info.run_name: r for r in runs_of(client, "table1")}
    assert len(runs) == 2 and all(n.startswith("lightgcn/lightgcn-") for n in runs)
    for o in res.outcomes:
        [run] = [r for r in runs.values() if r.data.tags["mgnm.run_dir"] == str(o.spec.run_dir)]
        assert_mlflow_run_equals_files(client, run, o.spec.run_dir)
    assert all(counts(client, "table1")[rid] == c for rid, c in before.items())  # reused: as was


# ------------------------------------------------------------------ TensorBoard
def scalars(events: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def hparams_of(events: Path) -> dict[str, object]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(events))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    out = {}
    for k, v in info.hparams.items():
        kind = v.WhichOneof("kind")
        out[k] = getattr(v, kind)
    return out


def assert_events_equal_files(events: Path, run_dir: Path) -> None:
    got = scalars(events)
    for key, points in expected_epochs(run_dir).items():  # float32 in event files
        assert got[key] == [(e, float(np.float32(v))) for e, v in points], key
    result = json.loads((run_dir / "result.json").read_text())
    for k, v in result["test"].items():
        assert got[f"test/{k.replace('@', '_at_')}"] == [(result["best_epoch"],
                                                         float(np.float32(v)))]
    hp = hparams_of(events)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert hp["model"] == "lightgcn" and hp["state"] == "finished"
    assert hp["n_layers"] == config["n_layers"] and hp["learning_rate"] == config["learning_rate"]


def test_tensorboard_event_files_live_and_pushed_equal_the_files(tmp_path, data_dir,
                                                                 finished_run):
    run_dir = tmp_path / "runs" / "live"
    fit({**FAST, "data": str(data_dir), "seed": 4}, run_dir=run_dir,
        callbacks=[Tracking("tensorboard", run_dir.parent)])
    assert_events_equal_files(run_dir / "tensorboard", run_dir)
    pushed = tmp_path / "runs" / "pushed"
    shutil.copytree(finished_run, pushed)
    report = push([tmp_path / "runs"], "tensorboard")
    assert (report.counts["new"], report.counts["unchanged"]) == (1, 1)  # live one: up to date
    assert_events_equal_files(pushed / "tensorboard", pushed)
    files = sorted(p.name for p in (pushed / "tensorboard").iterdir())
    assert push([pushed], "tensorboard").counts["unchanged"] == 1
    assert sorted(p.name for p in (pushed / "tensorboard").iterdir()) == files


# ------------------------------------------------------------------ command line
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_a_tracking_server_refusing_connections_leaves_a_complete_run_and_one_warning(
        tmp_path, data_dir):
    run_dir = tmp_path / "r"
    uri = f"http://127.0.0.1:{closed_port()}"
    # MLflow retries a refused connection for minutes by default; one try here
    res = run_mgnm("train", "-m", "lightgcn", "-d", data_dir, "--set", "epochs=3",
                   "--set", "batch_size=64", "--device", "cpu", "--out", run_dir, "-q",
                   "--track", "mlflow", "--tracking-uri", uri, timeout=120,
                   env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    warnings = [x for x in res.err.splitlines() if x.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: tracking to MLflow at "
                                                         f"{uri}"), res.err
    assert "(Connection refused)" in warnings[0]
    assert f"mgnm track {run_dir} --to mlflow --tracking-uri {uri}" in warnings[0]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["epochs_run"] == 3
    assert [r["epoch"] for r in read_log(run_dir)] == [1, 2, 3]


def test_track_command_sends_what_it_can_and_names_what_it_cannot(tmp_path, finished_run,
                                                                   empty_store):
    good = tmp_path / "exp" / "good"
    bad = tmp_path / "exp" / "bad"
    shutil.copytree(finished_run, good)
    shutil.copytree(finished_run, bad)
    store_in(tmp_path / "exp", empty_store)
    lines = (bad / "log.jsonl").read_text().splitlines()
    (bad / "log.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    res = run_mgnm("track", tmp_path / "exp", "--to", "mlflow")
    assert res.code == 2 and "Traceback" not in res.err
    db = (tmp_path / "exp" / "mlflow.db").resolve()
    assert res.out.splitlines() == [
        f"2 runs to MLflow at sqlite:///{db}, experiment 'exp': 1 new, 0 updated, "
        f"0 unchanged, 1 failed",
        f"view: mlflow ui --backend-store-uri sqlite:///{db}"]
    assert f"failed    {bad}: {bad / 'log.jsonl'}, line 2: not an epoch record" in res.err
    assert res.err.strip().splitlines()[-1] == \
        "error: 1 run(s) could not be sent (listed above)"
    [run] = runs_of(MlflowClient(f"sqlite:///{db}"), "exp")
    assert run.info.run_name == "good" and run.info.status == "FINISHED"


def test_track_errors_are_one_line(tmp_path, finished_run, data_dir):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_mgnm("track", tmp_path / "empty", "--to", "tensorboard"),
                      "no run directory")
    assert_user_error(run_mgnm("track", finished_run, "--to", "tensorboard",
                               "--tracking-uri", "http://x"),
                      "--tracking-uri and --experiment are for --to mlflow")
    block = tmp_path / "block"  # a stand-in that fails to import, as when not installed
    (block / "mlflow").mkdir(parents=True)
    (block / "mlflow" / "__init__.py").write_text("raise ImportError('not installed')\n")
    res = run_mgnm("train", "-m", "lightgcn", "-d", data_dir, "--out", tmp_path / "r",
                   "--track", "mlflow",
                   env={"PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")])})
    assert assert_user_error(res) == ("error: tracking with mlflow needs mlflow, from the "
                                      "extra 'track': pip install 'mgnm[track]'")
    assert not (tmp_path / "r").exists()  # refused before training
