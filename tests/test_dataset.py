"""Loading an MMRec directory, and one test per kind of bad input (message and exit code)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from mgnm.cli import main
from mgnm.data import load_dataset
from mgnm.errors import DataError


def make(tmp_path: Path, inter: str, feats: dict[str, np.ndarray] | None = None,
         name: str = "d") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.inter").write_text(inter)
    for m, arr in (feats or {}).items():
        np.save(d / f"{m}_feat.npy", arr)
    return d


GOOD = "userID\titemID\trating\tx_label\n0\t0\t5\t0\n0\t1\t3\t1\n1\t1\t4\t0\n1\t2\t4\t2\n2\t0\t1\t2\n"


def test_loads_splits_counts_and_features(tmp_path):
    d = make(tmp_path, GOOD, {"image": np.ones((3, 4), np.float16)})
    ds = load_dataset(d)
    assert (ds.n_users, ds.n_items) == (3, 3)
    assert ds.train.users.tolist() == [0, 1] and ds.train.items.tolist() == [0, 1]
    assert ds.valid.users.tolist() == [0] and ds.valid.items.tolist() == [1]
    assert ds.test.users.tolist() == [1, 2] and ds.test.items.tolist() == [2, 0]
    assert ds.features["image"].dtype == np.float32 and ds.features["image"].shape == (3, 4)
    # user 2 has no training row: dropped from test evaluation
    assert ds.eval_users("test").tolist() == [1]
    st = ds.stats()
    assert st["users_dropped_from_eval"] == {"valid": 0, "test": 1}
    assert st["sparsity"] == pytest.approx(1 - 5 / 9)
    assert st["modalities"] == {"image": 4}


def test_tiny_fixture_statistics(tiny):
    st = tiny.stats()
    assert st["users"] == 60 and st["items"] == 45
    assert st["valid"] == 60 and st["test"] == 60
    assert st["interactions"] == st["train"] + st["valid"] + st["test"]
    assert tiny.modalities == ["image", "text"]


def test_modality_selection_keeps_order_and_rejects_unknown(tiny_dir):
    ds = load_dataset(tiny_dir, modalities=["text", "image"])
    assert ds.modalities == ["text", "image"]
    assert load_dataset(tiny_dir).with_modalities(["text"]).modalities == ["text"]
    with pytest.raises(DataError, match="no feature file for modality 'audio'"):
        load_dataset(tiny_dir, modalities=["audio"])


def test_duplicates_warn_and_keep_first(tmp_path):
    d = make(tmp_path, "userID\titemID\tx_label\n0\t0\t0\n0\t1\t0\n0\t0\t2\n1\t1\t1\n")
    with pytest.warns(UserWarning, match=r"1 duplicate .* first at line 4"):
        ds = load_dataset(d)
    assert len(ds.train) == 2 and len(ds.test) == 0 and ds.duplicates_dropped == 1


def test_crlf_and_trailing_blank_lines(tmp_path):
    d = make(tmp_path, "userID\titemID\tx_label\r\n0\t0\t0\r\n1\t1\t0\r\n\r\n")
    assert len(load_dataset(d).train) == 2


BAD_INTER = [
    ("userID\titemID\n0\t1\n", r"line 1: missing column 'x_label'"),
    ("userID,itemID,x_label\n0,1,0\n", r"missing column .*must be tab-separated"),
    ("userID\titemID\tx_label\n0\t1\t0\n0\tabc\t0\n", r"line 3: itemID 'abc' is not an integer"),
    ("userID\titemID\tx_label\n0\t1.5\t0\n", r"line 2: itemID '1.5' is not an integer"),
    ("userID\titemID\tx_label\n0\t1\t0\n-3\t1\t0\n", r"line 3: userID -3 is negative"),
    ("userID\titemID\tx_label\n0\t1\t0\n1\t1\t3\n", r"line 3: x_label 3 is not 0"),
    ("userID\titemID\tx_label\n0\t1\t0\n1\t1\n", r"line 3: 2 field\(s\), expected 3"),
    ("userID\titemID\tx_label\n0\t1\t1\n1\t1\t2\n", r"the train split is empty"),
    ("", r"empty file"),
    ("userID\titemID\tx_label\n", r"no interaction rows"),
]


@pytest.mark.parametrize(("inter", "message"), BAD_INTER)
def test_bad_interaction_file(tmp_path, inter, message):
    d = make(tmp_path, inter)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(d)
    assert str(d / "d.inter") in str(info.value)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(DataError, match="dataset directory does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no interaction file \(expected empty.inter\)"):
        load_dataset(tmp_path / "empty")


def test_non_utf8_file(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "d.inter").write_bytes(b"userID\titemID\tx_label\n0\t\xff\t0\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(d)


INTER3 = "userID\titemID\tx_label\n0\t0\t0\n1\t1\t0\n1\t2\t1\n0\t2\t2\n"


def test_feature_rows_must_match_items(tmp_path):
    d = make(tmp_path, INTER3, {"image": np.zeros((4, 2), np.float32)})
    with pytest.raises(DataError, match=r"image_feat.npy: 4 rows but the interactions have 3"):
        load_dataset(d)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(tmp_path, bad):
    f = np.zeros((3, 2), np.float32)
    f[2, 1] = bad
    d = make(tmp_path, INTER3, {"text": f})
    with pytest.raises(DataError, match=r"text_feat.npy: non-finite value .* row 2 .*column 1"):
        load_dataset(d)


def test_pickled_npy(tmp_path):
    d = make(tmp_path, INTER3)
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, None, "x"]
    np.save(d / "image_feat.npy", obj, allow_pickle=True)
    with pytest.raises(DataError, match="image_feat.npy: holds pickled Python objects"):
        load_dataset(d)


def test_raw_pickle_disguised_as_npy(tmp_path):
    d = make(tmp_path, INTER3)
    (d / "image_feat.npy").write_bytes(pickle.dumps(np.zeros((3, 2))))
    with pytest.raises(DataError, match="image_feat.npy: .*(pickled|not a valid .npy)"):
        load_dataset(d)


def test_non_numeric_npy(tmp_path):
    d = make(tmp_path, INTER3, {"image": np.array([["a", "b"]] * 3)})
    with pytest.raises(DataError, match=r"image_feat.npy: dtype <U1 is not numeric"):
        load_dataset(d)


def test_one_dimensional_and_truncated_npy(tmp_path):
    d = make(tmp_path, INTER3, {"image": np.zeros(3, np.float32)})
    with pytest.raises(DataError, match=r"shape \(3,\), expected 2 dimensions"):
        load_dataset(d)
    (d / "image_feat.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a valid .npy file"):
        load_dataset(d)


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    d = make(tmp_path, "userID\titemID\tx_label\n0\t1\t0\n1\t1\t7\n")
    assert main(["info", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3: x_label 7" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_info_prints_statistics(tiny_dir, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["info", str(tiny_dir)]) == 0
    out = capsys.readouterr().out
    assert "users          60" in out and "image (8-d), text (5-d)" in out
