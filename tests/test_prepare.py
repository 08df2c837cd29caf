"""``mgnm prepare``: logs and the Amazon files, generated here in their real formats."""

from __future__ import annotations

import gzip
import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from clitools import CliResult, assert_user_error, run_mgnm

from mgnm.data import load_dataset
from mgnm.prepare.amazon import item_sentence, prepare_amazon
from mgnm.prepare.kcore import k_core
from mgnm.prepare.pipeline import prepare_interactions
from mgnm.prepare.split import held_out, split_labels

DEMO = Path(__file__).resolve().parents[1] / "src" / "mgnm" / "datasets" / "movielens"


def read_inter(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def random_log(rng: np.random.Generator, n_users: int, n_items: int, n_rows: int):
    """(user, item, time, rating) rows with skewed popularity, duplicates and string IDs."""
    users = rng.zipf(1.6, n_rows) % n_users
    items = rng.zipf(1.4, n_rows) % n_items
    times = rng.integers(1_000_000, 2_000_000, n_rows)
    ratings = rng.integers(1, 6, n_rows)
    return [(f"user-{u}", f"it:{i}", int(t), int(r))
            for u, i, t, r in zip(users, items, times, ratings, strict=True)]


def write_csv(path: Path, rows, header=("user", "item", "time", "rating")) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def reference_k_core(pairs: set[tuple[str, str]], k: int) -> set[tuple[str, str]]:
    """Slow k-core: drop one offending user or item at a time until none is left."""
    pairs = set(pairs)
    while True:
        uc = Counter(u for u, _ in pairs)
        ic = Counter(i for _, i in pairs)
        bad = next(((u, i) for u, i in pairs if uc[u] < k or ic[i] < k), None)
        if bad is None:
            return pairs
        u, i = bad
        pairs = {p for p in pairs if not ((uc[u] < k and p[0] == u) or (ic[i] < k and p[1] == i))}


# ---------------------------------------------------------------- logs: k-core, split, maps


@pytest.fixture
def log_rows():
    return random_log(np.random.default_rng(5), 120, 80, 3000)


def test_k_core_holds_and_equals_slow_reference(tmp_path, log_rows):
    src = write_csv(tmp_path / "log.csv", log_rows)
    prepare_interactions(src, tmp_path / "ds", "user", "item", k_core=5, quiet=True)
    ds = load_dataset(tmp_path / "ds")
    rows = read_inter(tmp_path / "ds" / "ds.inter")
    u = np.array([int(r["userID"]) for r in rows])
    i = np.array([int(r["itemID"]) for r in rows])
    assert np.bincount(u).min() >= 5 and np.bincount(i).min() >= 5
    got = {(ds.user_map.original[a], ds.item_map.original[b]) for a, b in zip(u, i, strict=True)}
    assert got == reference_k_core({(r[0], r[1]) for r in log_rows}, 5)
    assert len(got) == len(rows)  # one row per pair


def test_k_core_function_is_the_fixed_point():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 60, 300), rng.integers(0, 50, 300)
    keep, rounds = k_core(users, items, 4)
    assert rounds >= 2 and keep.any() and not keep.all()
    for col in (users[keep], items[keep]):
        counts = np.bincount(col)
        assert counts[counts > 0].min() >= 4


def expected_held_out(n: int) -> tuple[int, int]:
    if n < 10:
        return 1, 1
    h = (2 * n) // 10
    return h - h // 2, h // 2


def test_split_counts_follow_the_rule_per_user(tmp_path, log_rows):
    src = write_csv(tmp_path / "log.csv", log_rows)
    prepare_interactions(src, tmp_path / "ds", "user", "item", k_core=3, seed=7, quiet=True)
    per_user: dict[str, Counter] = defaultdict(Counter)
    for r in read_inter(tmp_path / "ds" / "ds.inter"):
        per_user[r["userID"]][r["x_label"]] += 1
    assert any(sum(c.values()) >= 10 for c in per_user.values())
    assert any(sum(c.values()) < 10 for c in per_user.values())
    for c in per_user.values():
        n = sum(c.values())
        assert (c["1"], c["2"]) == expected_held_out(n)


def test_time_split_holds_out_the_latest(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for u in range(30):
        n = int(rng.integers(5, 25))
        for j, it in enumerate(rng.choice(40, n, replace=False)):
            rows.append((f"u{u}", f"i{it}", 1000 * u + j * 7 + int(rng.integers(0, 3)), 5))
    src = write_csv(tmp_path / "log.csv", rows)
    prepare_interactions(src, tmp_path / "ds", "user", "item", time="time", split="time",
                         k_core=1, quiet=True)
    by_user: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in read_inter(tmp_path / "ds" / "ds.inter"):
        by_user[r["userID"]][r["x_label"]].append(int(r["timestamp"]))
    for labels in by_user.values():
        n = sum(len(v) for v in labels.values())
        assert (len(labels["1"]), len(labels["2"])) == expected_held_out(n)
        assert max(labels["0"]) <= min(labels["1"]) <= max(labels["1"]) <= min(labels["2"])


def test_time_split_ties_are_broken_by_the_seed():
    users = np.zeros(20, dtype=np.int64)
    items = np.arange(20)
    times = np.zeros(20)
    a = split_labels(users, items, 1, "time", times)
    assert np.array_equal(a, split_labels(users, items, 1, "time", times))
    assert not np.array_equal(a, split_labels(users, items, 2, "time", times))
    assert Counter(a.tolist()) == {0: 16, 1: 2, 2: 2}


def test_maps_round_trip_and_duplicates_keep_the_latest(tmp_path):
    rows = [("alice", "x", 10, 1), ("alice", "x", 30, 5), ("alice", "x", 20, 3),
            ("alice", "y", 1, 1), ("alice", "z", 2, 2),
            ("bob", "y", 5, 4), ("bob", "x", 6, 2), ("bob", "z", 3, 1), ("carol", "z", 7, 3),
            ("carol", "x", 1, 1), ("carol", "y", 2, 2), ("carol", "", 8, 3), ("", "z", 9, 4)]
    src = write_csv(tmp_path / "log.csv", rows)
    rec = prepare_interactions(src, tmp_path / "ds", "user", "item", time="time",
                               rating="rating", k_core=1, quiet=True)
    ds = load_dataset(tmp_path / "ds")
    assert ds.user_map.original == ("alice", "bob", "carol")
    assert ds.item_map.original == ("x", "y", "z")
    got = {(ds.user_map.original[int(r["userID"])], ds.item_map.original[int(r["itemID"])]):
           (r["rating"], r["timestamp"]) for r in read_inter(tmp_path / "ds" / "ds.inter")}
    assert got == {("alice", "x"): ("5.0", "30"), ("alice", "y"): ("1.0", "1"),
                   ("alice", "z"): ("2.0", "2"), ("bob", "y"): ("4.0", "5"),
                   ("bob", "x"): ("2.0", "6"), ("bob", "z"): ("1.0", "3"),
                   ("carol", "z"): ("3.0", "7"), ("carol", "x"): ("1.0", "1"),
                   ("carol", "y"): ("2.0", "2")}
    steps = {s["step"]: s for s in rec["steps"]}
    assert steps["read"]["missing_field"] == 2 and steps["deduplicate"]["dropped"] == 2
    assert rec["inputs"][0]["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()


def test_integer_ids_are_indexed_numerically_and_min_rating_filters(tmp_path):
    rows = [(u, i, 0, r) for u in (10, 9, 100)
            for i, r in ((2, 5), (11, 4), (1, 1), (20, 4.5), (3, 3.5))]
    src = write_csv(tmp_path / "log.csv", rows)
    prepare_interactions(src, tmp_path / "ds", "user", "item", rating="rating", min_rating=4,
                         k_core=1, quiet=True)
    ds = load_dataset(tmp_path / "ds")
    assert ds.user_map.original == ("9", "10", "100")
    assert ds.item_map.original == ("2", "11", "20")


def test_gzip_json_lines_log(tmp_path):
    path = tmp_path / "log.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for u in range(6):
            for i in range(6):
                day = 1 + (u + i) % 9
                fh.write(json.dumps({"u": u, "i": f"item{i}", "t": f"2020-01-0{day}T00:00:00"})
                         + "\n")
    prepare_interactions(path, tmp_path / "ds", "u", "i", time="t", k_core=5, quiet=True)
    ds = load_dataset(tmp_path / "ds")
    assert (ds.n_users, ds.n_items) == (6, 6)
    stamps = {int(r["timestamp"]) for r in read_inter(tmp_path / "ds" / "ds.inter")}
    assert min(stamps) == 1577836800  # 2020-01-01 UTC


def test_prepare_reproduces_the_bundled_demo_split(tmp_path):
    """The demo's .inter as a raw log (IDs already 0..n-1, already 5-core): the same rows and
    x_label come out with the demo's seed, byte for byte."""
    prepare_interactions(DEMO / "movielens.inter", tmp_path / "movielens", "userID", "itemID",
                         time="timestamp", rating="rating", min_rating=4.0, seed=2024,
                         quiet=True)
    assert (tmp_path / "movielens" / "movielens.inter").read_bytes() == \
        (DEMO / "movielens.inter").read_bytes()


# ---------------------------------------------------------------- Amazon files


ASIN = [f"B{n:09d}" for n in range(12)]


def amazon_files(tmp: Path, with_image: set[int] | None = None) -> dict[str, Path]:
    """Reviews (gzip JSON lines), 2014 metadata (gzip Python literals), a .b image file."""
    rng = np.random.default_rng(3)
    reviews = tmp / "reviews_Baby_5.json.gz"
    with gzip.open(reviews, "wt") as fh:
        for u in range(20):
            for it in rng.choice(len(ASIN), 7, replace=False):
                fh.write(json.dumps({"reviewerID": f"A{u:05d}ZZ", "asin": ASIN[it],
                                     "overall": float(rng.integers(1, 6)),
                                     "unixReviewTime": int(rng.integers(1e9, 1.3e9)),
                                     "reviewText": "fine"}) + "\n")
    meta = tmp / "meta_Baby.json.gz"
    with gzip.open(meta, "wt") as fh:
        for n, a in enumerate(ASIN[:-1]):  # the last item has no metadata
            fh.write(repr({"asin": a, "title": f"Bottle {n}", "brand": "Acme",
                           "categories": [["Baby", "Feeding"], ["Sale"]],
                           "description": f"Holds\nmilk {n}", "price": 3.5}) + "\n")
    image = tmp / "image_features_Baby.b"
    with_image = set(range(0, len(ASIN), 2)) if with_image is None else with_image
    with open(image, "wb") as fh:
        for n in sorted(with_image) + [99]:
            asin = ASIN[n].encode() if n < len(ASIN) else b"X000000099"  # 99: not in the data
            fh.write(asin + struct.pack("<4096f", *image_vector(n)))
    return {"reviews": reviews, "meta": meta, "image": image}


def image_vector(n: int) -> list[float]:
    return [float(n) + j / 4096 for j in range(4096)]


def test_amazon_image_rows_follow_item_index_and_missing_rows_are_the_mean(tmp_path):
    f = amazon_files(tmp_path)
    rec = prepare_amazon(f["reviews"], f["meta"], tmp_path / "baby", f["image"], text=False,
                         quiet=True)
    ds = load_dataset(tmp_path / "baby")
    feat = np.load(tmp_path / "baby" / "image_feat.npy")
    assert feat.dtype == np.float32 and feat.shape == (ds.n_items, 4096)
    present = [i for i, a in enumerate(ds.item_map.original) if ASIN.index(a) % 2 == 0]
    for i in present:
        assert np.array_equal(feat[i], np.float32(image_vector(ASIN.index(ds.item_map.original[i]))))
    mean = np.mean([np.float32(image_vector(ASIN.index(ds.item_map.original[i]))) for i in present],
                   axis=0, dtype=np.float64).astype(np.float32)
    absent = sorted(set(range(ds.n_items)) - set(present))
    assert absent
    for i in absent:
        np.testing.assert_allclose(feat[i], mean, rtol=1e-6)
    assert rec["features"]["image"]["items_without_image_mean_filled"] == len(absent)
    titles = dict(zip(ds.item_map.original, ds.item_map.attributes["title"], strict=True))
    assert titles["B000000003"] == "Bottle 3" and titles[ASIN[-1]] == ""


def test_amazon_sentence_2014_and_2018():
    m14 = {"title": "Cup", "brand": "Acme", "categories": [["Baby", "Feeding"], ["Sale"]],
           "description": "Red\ncup"}
    assert item_sentence(m14) == "Cup Acme Baby Feeding Red cup"
    m18 = {"title": "Cup", "category": ["Baby", "Feeding"], "description": ["Red", "cup"]}
    assert item_sentence(m18) == "Cup   Baby Feeding Red cup"
    assert item_sentence({}) == "     "


def test_image_pass_streams_a_large_file_in_blocks(tmp_path, monkeypatch):
    """Blocks of 3 records: records straddling block ends still land on the right rows."""
    import mgnm.prepare.amazon as amazon

    monkeypatch.setattr(amazon, "BLOCK_RECORDS", 3)
    f = amazon_files(tmp_path, with_image=set(range(len(ASIN))))
    ids = list(reversed(ASIN))
    info = amazon.read_image_features(f["image"], ids, tmp_path / "x.npy", quiet=True)
    feat = np.load(tmp_path / "x.npy")
    for row, a in enumerate(ids):
        assert np.array_equal(feat[row], np.float32(image_vector(ASIN.index(a))))
    assert info["counts"]["records"] == len(ASIN) + 1


# ---------------------------------------------------------------- errors, through the CLI
# One subprocess per kind of check (as a user meets the command: exit 2, one line, no
# traceback); the other cases go through the same entry point in-process, which is faster.


def in_process(capsys, *args: object) -> CliResult:
    from mgnm.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)


def test_cli_prepare_interactions_then_info(tmp_path, log_rows, capsys):
    src = write_csv(tmp_path / "log.csv", log_rows)
    proc = run_mgnm("prepare", "interactions", src, "--out", tmp_path / "ds", "--user", "user",
                    "--item", "item", "--time", "time", "--split", "time")
    assert proc.code == 0, proc.err
    assert "wrote" in proc.out and "Traceback" not in proc.err
    info = in_process(capsys, "info", tmp_path / "ds")
    assert info.code == 0 and "users" in info.out


def test_cli_prepare_quiet_prints_only_the_result(tmp_path, log_rows):
    src = write_csv(tmp_path / "log.csv", log_rows)
    args = ["prepare", "interactions", src, "--user", "user", "--item", "item"]
    loud = run_mgnm(*args, "--out", tmp_path / "a")
    quiet = run_mgnm(*args, "--out", tmp_path / "b", "-q")
    assert loud.code == quiet.code == 0, quiet.err
    assert len(loud.out.splitlines()) == 5  # read, deduplicate, 5-core, split, wrote
    assert quiet.err == ""
    assert quiet.out.splitlines() == [loud.out.splitlines()[-1].replace(
        str(tmp_path / "a"), str(tmp_path / "b"))]
    assert quiet.out.startswith(f"wrote {tmp_path / 'b'}: ")


def test_cli_errors_name_file_and_line(tmp_path, log_rows, capsys):
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write('{"u": 1, "i": 2}\n{"u": 1, "i": \n')
    assert_user_error(run_mgnm("prepare", "interactions", bad, "-o", tmp_path / "o1", "--user", "u",
                        "--item", "i", "-q"), str(bad), "line 2")
    src = write_csv(tmp_path / "log.csv", log_rows)
    assert_user_error(in_process(capsys, "prepare", "interactions", src, "-o", tmp_path / "o2",
                          "--user", "user", "--item", "product", "-q"),
               str(src), "line 1", "'product'")
    assert_user_error(in_process(capsys, "prepare", "interactions", src, "-o", tmp_path / "o3",
                          "--user", "user", "--item", "item", "--k-core", "500", "-q"),
               "500-core is empty")
    rating = write_csv(tmp_path / "r.csv", [("a", "b", 1, "five")])
    assert_user_error(in_process(capsys, "prepare", "interactions", rating, "-o", tmp_path / "o4",
                          "--user", "user", "--item", "item", "--rating", "rating", "-q"),
               "line 2", "'five'")
    for o in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / o).exists()
    assert not list(tmp_path.glob(".o*"))  # no partial directory left behind


def test_cli_refuses_an_out_holding_a_different_dataset(tmp_path, log_rows, capsys):
    src = write_csv(tmp_path / "log.csv", log_rows)
    args = ["prepare", "interactions", src, "-o", tmp_path / "ds", "--user", "user", "--item",
            "item", "-q"]
    assert in_process(capsys, *args).code == 0
    assert in_process(capsys, *args).code == 0  # the same recipe again replaces it
    assert_user_error(run_mgnm(*args, "--seed", "1"), str(tmp_path / "ds"), "different dataset", "seed")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_user_error(in_process(capsys, *args[:3], "-o", other, *args[5:]), "different dataset")
    assert (other / "notes.txt").read_text() == "mine"


def test_cli_amazon_bad_inputs(tmp_path, capsys):
    f = amazon_files(tmp_path)
    base = ["prepare", "amazon", "--reviews", f["reviews"], "--meta", f["meta"], "--no-text",
            "-q"]
    short = tmp_path / "short.b"
    short.write_bytes(f["image"].read_bytes()[: 16394 * 2 + 100])
    assert_user_error(run_mgnm(*base, "--image-features", short, "-o", tmp_path / "a"), str(short),
               "record 3", "truncated")
    bad_asin = tmp_path / "asin.b"
    bad_asin.write_bytes(b"B00\x00\x00\x00\x00\x00\x00\x00" + bytes(16384))
    assert_user_error(in_process(capsys, *base, "--image-features", bad_asin, "-o", tmp_path / "b"),
               "record 1", "not 10 ASCII characters")
    marker = tmp_path / "pwned"
    evil = tmp_path / "meta_evil.json"
    evil.write_text(f"{{'asin': 'B000000000'}}\n__import__('os').system('touch {marker}')\n")
    assert_user_error(in_process(capsys, "prepare", "amazon", "--reviews", f["reviews"], "--meta", evil,
                          "--no-text", "-q", "-o", tmp_path / "c"), str(evil), "line 2")
    assert not marker.exists()
    assert not any((tmp_path / d).exists() for d in "abc")


def test_cli_amazon_then_train_two_epochs(tmp_path, capsys):
    f = amazon_files(tmp_path)
    proc = run_mgnm("prepare", "amazon", "--reviews", f["reviews"], "--meta", f["meta"],
                    "--image-features", f["image"], "--no-text", "-o", tmp_path / "baby")
    assert proc.code == 0, proc.err
    assert "image_feat.npy: dim 4096" in proc.out
    record = json.loads((tmp_path / "baby" / "prepare.json").read_text())
    assert [s["step"] for s in record["steps"]] == ["read", "deduplicate", "5-core",
                                                   "random split"]
    assert len(record["inputs"]) == 3 and all(len(i["sha256"]) == 64 for i in record["inputs"])
    train = in_process(capsys, "train", "--model", "mgnm", "--data", tmp_path / "baby", "--set",
                       "epochs=2", "--out", tmp_path / "run", "-q")
    assert train.code == 0, train.err
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs_run"] == 2


def test_held_out_counts_match_the_reference_toolbox_baby_file():
    """Per-user (validation, test) counts of the reference's own Amazon Baby file, shipped as
    counts (tests/data/baby_split_counts.tsv): the rule gives each one. The file itself has
    users with one more validation than test row and none the reverse, so a rule that gave
    test the larger half would fail here."""
    path = Path(__file__).parent / "data" / "baby_split_counts.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()
            if line and not line.startswith("#")][1:]
    table = [tuple(int(x) for x in r) for r in rows]
    assert sum(r[3] for r in table) == 19445
    assert sum(r[3] for r in table if r[1] > r[2]) == 1123
    assert not any(r[1] < r[2] for r in table)
    for n, valid, test, _ in table:
        assert held_out(n) == (valid, test), n
