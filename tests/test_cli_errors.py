"""The command line as a user meets it: the installed ``mgnm`` in a subprocess; every error is
one line naming the path, key or value at fault, exit status 2, and never a traceback."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
from clitools import assert_user_error, run_mgnm

TRAIN = ("--set", "epochs=2", "--set", "batch_size=64", "--threads", "1", "-q")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("cli")
    data = write_dataset(root)
    res = run_mgnm("train", "--model", "lightgcn", "--data", data, *TRAIN, "--out", root / "run")
    assert res.code == 0, res.err
    return root / "run"


@pytest.mark.parametrize(("args", "fragments"), [
    (["train", "--model", "nope"], ["unknown model 'nope'"]),
    (["train", "--model", "bpr", "--set", "regweight=1"], ["unknown config key 'regweight'"]),
    (["train", "--model", "bpr", "--config", "missing.yaml"],
     ["missing.yaml", "config file does not exist"]),
    (["train", "--model", "bpr", "--preset", "nope"], ["unknown preset 'nope'"]),
    (["train", "--model", "bpr", "--threads", "0"], ["--threads", "0"]),
    (["train", "--model", "bpr", "--bogus"], ["No such option '--bogus'"]),
    (["evaluate", "no/such/run"], ["no/such/run", "run directory does not exist"]),
    (["info", "no/such/dir"], ["no/such/dir", "dataset directory does not exist"]),
    (["models", "lightgcm"], ["unknown model 'lightgcm'", "did you mean 'lightgcn'"]),
    (["train", "--model", "mgnm", "--set", "feature_dtype=float16"],
     ["config key 'feature_dtype' = 'float16'", "'float32' or 'bfloat16'"]),
    # a rule across two keys: the message names both, with no placeholder key
    (["train", "--model", "mgnm", "--set", "finetune_features=true",
      "--set", "feature_dtype=bfloat16"],
     ["invalid config for model 'mgnm': finetune_features=true needs feature_dtype=float32"]),
    (["train", "--model", "freedom", "--set", "feat_embed_dim=32"],
     ["invalid config for model 'freedom': feat_embed_dim (32) must equal embedding_size"]),
])
def test_user_errors_are_one_line(tmp_path, args, fragments):
    assert_user_error(run_mgnm(*args, cwd=tmp_path), *fragments)


def test_resume_refuses_a_seed_even_zero(run_dir):
    assert_user_error(run_mgnm("train", "--resume", run_dir, "--seed", "0"),
                      "--resume uses the run's saved config", "--seed")


def test_out_under_a_file_names_the_path(tiny_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run_mgnm("train", "--model", "bpr", "--data", tiny_dir, *TRAIN,
                               "--out", blocker / "run"),
                      str(blocker / "run"), "cannot create directory", "Not a directory")


def test_disk_full_during_a_run_is_one_line(tiny_dir, tmp_path):
    """Files larger than 8 KB cannot be written (RLIMIT_FSIZE; Python ignores SIGXFSZ):
    the first file of the best epoch (per_user.npz, written before best.pt) fails as a full
    disk would, naming the file."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    res = run_mgnm("train", "--model", "lightgcn", "--data", tiny_dir, *TRAIN,
                   "--out", tmp_path / "run", preexec_fn=small_files)
    line = assert_user_error(res, str(tmp_path / "run"), "cannot write", "File too large")
    assert "per_user.npz" in line
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_relative_data_works_from_another_directory(tiny_dir, tmp_path):
    res = run_mgnm("train", "--model", "bpr", "--data", tiny_dir.name, *TRAIN,
                   "--out", tmp_path / "run", cwd=tiny_dir.parent)
    assert res.code == 0, res.err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_mgnm("evaluate", tmp_path / "run", "--json", cwd=elsewhere)
    assert res.code == 0, res.err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert json.loads(res.out)["test"] == result["test"]


def test_models_name_lists_every_key_with_type_default_and_meaning():
    from mgnm.config import TrainConfig
    from mgnm.models import get_model_class

    res = run_mgnm("models", "mgnm")
    assert res.code == 0, res.err
    rows = {line.split()[0]: line for line in res.out.splitlines() if line.startswith("  ")}
    cls = get_model_class("mgnm")
    expected = {**cls.Config.model_fields, **TrainConfig.model_fields}
    assert set(rows) == set(expected)
    for key, field in expected.items():
        assert field.description and field.description[:20] in rows[key], key
    assert "0.0001" in rows["ddr_weight"] and "float" in rows["ddr_weight"]


def test_threads_option_reaches_the_trainer(tiny_dir, tmp_path):
    res = run_mgnm("train", "--model", "bpr", "--data", tiny_dir, "--set", "epochs=1",
                   "--threads", "1", "--out", tmp_path / "run")
    assert res.code == 0, res.err
    assert "(cpu, 1 thread, " in res.err.splitlines()[0]


def test_export_of_vbpr_parameter_tables(tiny_dir, tmp_path):
    """(BPR's case and every model's values: tests/test_recommend_cli.py, test_predict.py.)"""
    run = tmp_path / "run"
    assert run_mgnm("train", "--model", "vbpr", "--data", tiny_dir, *TRAIN, "--out", run).code == 0
    res = run_mgnm("export", run, "-o", tmp_path / "emb.npz")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    with np.load(tmp_path / "emb.npz") as f:
        assert f["user_embeddings"].shape[0] == 60 and f["item_embeddings"].shape[0] == 45
