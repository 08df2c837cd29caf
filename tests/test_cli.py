"""The command line end to end on the tiny fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mgnm.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def trained(tiny_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--model", "lightgcn", "--data", tiny_dir,
                             "--set", "epochs=4", "--set", "batch_size=64", "--seed", 3,
                             "--device", "cpu", "--out", run)
    assert code == 0, err
    return run


def test_train_prints_table_and_writes_result(trained, capsys):
    res = json.loads((trained / "result.json").read_text())
    assert res["model"] == "lightgcn" and res["seed"] == 3 and res["epochs_run"] == 4
    code, out, _ = run_cli(capsys, "evaluate", trained, "--json")
    assert code == 0
    again = json.loads(out)
    assert again["test"]["recall@20"] == pytest.approx(res["test"]["recall@20"], abs=1e-6)
    assert again["valid"]["ndcg@10"] == pytest.approx(res["valid"]["ndcg@10"], abs=1e-6)


def test_recommend_and_export(trained, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "recommend", trained, "--users", "0,5", "-k", 3)
    header, *lines = out.strip().splitlines()
    rows = [line.split("\t") for line in lines]
    assert code == 0 and header == "user\trank\titem\tscore"
    assert len(rows) == 6 and [r[1] for r in rows[:3]] == ["1", "2", "3"]
    code, _, err = run_cli(capsys, "recommend", trained, "--users", "999")
    assert code == 2 and "unknown user '999': this dataset has no u_id_map.tsv, so users are " \
                         "indices 0..59" in err
    npz = tmp_path / "emb.npz"
    assert run_cli(capsys, "export", trained, "-o", npz)[0] == 0
    with np.load(npz) as f:
        assert f["user_embeddings"].shape == (60, 64) and f["item_embeddings"].shape == (45, 64)


def test_resume_flag_continues_and_refuses_other_options(trained, capsys, tiny_dir):
    code, _, err = run_cli(capsys, "train", "--resume", trained, "--model", "bpr")
    assert code == 2 and "--resume uses the run's saved config" in err
    code, _, err = run_cli(capsys, "train", "--model", "bpr", "--data", tiny_dir, "--out", trained)
    assert code == 2 and "already holds a run" in err
    code, out, _ = run_cli(capsys, "train", "--resume", trained, "-q")
    assert code == 0 and "best epoch" in out


def test_models_lists_registry(capsys):
    from mgnm.models import MODELS

    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    heads = [line for line in out.strip().splitlines() if not line.startswith(" ")]
    assert [line.split()[0] for line in heads] == list(MODELS)
