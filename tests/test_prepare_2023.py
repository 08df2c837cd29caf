"""``mgnm prepare`` on Amazon Reviews 2023 files and the leave-last-out and timestamp splits.

The files are generated here in the 2023 release's formats (gzip JSON lines with every field
of a review and of a product); every result is checked against a slow reference written from
the benchmark's description: items keyed by ``parent_asin``, the earliest review of a repeated
(user, item) pair, the 5-core, then the split.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from clitools import CliResult, assert_user_error, run_mgnm
from test_prepare import read_inter, reference_k_core, write_csv

from mgnm.data import load_dataset
from mgnm.errors import DataError
from mgnm.prepare.amazon import item_sentence_2023, prepare_amazon
from mgnm.prepare.kcore import one_per_pair
from mgnm.prepare.pipeline import prepare_interactions
from mgnm.prepare.split import leave_last_out, split_labels, timestamp_cut

DAY_MS = 86_400_000
T0 = 1_600_000_000_000  # 2020-09-13, in milliseconds as the 2023 files give times


def review_2023(user: str, parent: str, variant: int, ts: int, rating: float) -> dict:
    """One review with every field of the 2023 release."""
    photos = [{"small_image_url": f"https://images-na.ssl-images-amazon.com/{user}_SL256_.jpg",
               "medium_image_url": f"https://images-na.ssl-images-amazon.com/{user}_SL800_.jpg",
               "large_image_url": f"https://images-na.ssl-images-amazon.com/{user}_SL1600_.jpg",
               "attachment_type": "IMAGE"}] if variant == 1 else []
    return {"rating": rating, "title": "Works well", "text": "Bought it for my son.\nHe likes it.",
            "images": photos, "asin": f"V{variant}{parent[2:]}", "parent_asin": parent,
            "user_id": user, "timestamp": ts, "helpful_vote": variant,
            "verified_purchase": variant != 2}


def meta_2023(parent: str, n: int) -> dict:
    """One product with every field of the 2023 release; some parts missing on some items."""
    images = [{"thumb": f"https://m.media-amazon.com/images/I/{parent}._SS40_.jpg",
               "large": f"https://m.media-amazon.com/images/I/{parent}.jpg",
               "variant": "MAIN", "hi_res": f"https://m.media-amazon.com/images/I/{parent}_SL1500_.jpg"},
              {"thumb": "https://m.media-amazon.com/images/I/back._SS40_.jpg",
               "large": "https://m.media-amazon.com/images/I/back.jpg", "variant": "PT01",
               "hi_res": None}]
    return {"main_category": "Toys & Games", "title": f"Wooden train {n}",
            "average_rating": 4.5, "rating_number": 12,
            "features": [] if n % 4 == 1 else ["Solid beech", f"Ages {n}+"],
            "description": ["A train.", f"Paint\nis safe {n}."],
            "price": None if n % 3 == 0 else 19.99, "images": [] if n % 5 == 2 else images,
            "videos": [{"title": "Demo", "url": "https://www.amazon.com/vdp/1", "user_id": ""}],
            "store": None if n % 3 == 0 else "Acme Toys",
            "categories": ["Toys & Games", "Trains"] if n % 2 else [],
            "details": {"Item Weight": "1 pound", "Manufacturer": "Acme"},
            "parent_asin": parent, "bought_together": None}


PARENTS = [f"B0{n:08d}" for n in range(24)]


def reviews_log(seed: int = 3, n_users: int = 45) -> list[tuple[str, str, int, int, float]]:
    """(user, parent_asin, variant, timestamp, rating) rows in file order: whole days only, so
    that many times are equal; repeated (user, item) pairs through other variants."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        user = f"AG{u:04d}XYZ{'Q' * (u % 3)}"
        picks = rng.choice(len(PARENTS), int(rng.integers(2, 12)), replace=True)
        for p in picks:
            rows.append((user, PARENTS[p], int(rng.integers(0, 3)),
                         T0 + int(rng.integers(0, 12)) * DAY_MS, float(rng.integers(1, 6))))
    order = rng.permutation(len(rows))  # users interleaved in the file
    return [rows[j] for j in order]


def write_2023(tmp: Path, rows) -> dict[str, Path]:
    reviews = tmp / "Toys_and_Games.jsonl.gz"
    with gzip.open(reviews, "wt") as fh:
        for user, parent, variant, ts, rating in rows:
            fh.write(json.dumps(review_2023(user, parent, variant, ts, rating)) + "\n")
    meta = tmp / "meta_Toys_and_Games.jsonl.gz"
    with gzip.open(meta, "wt") as fh:
        fh.write(json.dumps(meta_2023("B0OTHER001", 99)) + "\n")  # not in the data
        for n in range(len(PARENTS) - 1):  # the last parent has no metadata
            fh.write(json.dumps(meta_2023(PARENTS[n], n)) + "\n")
    return {"reviews": reviews, "meta": meta}


def reference(rows, k: int) -> dict[tuple[str, str], tuple[int, int, float]]:
    """(user, item) -> (line, time, rating) of the review kept: the earliest by time, then by
    line; then the k-core."""
    kept: dict[tuple[str, str], tuple[int, int, float]] = {}
    numbered = [(ts, line, user, parent, rating)
                for line, (user, parent, _, ts, rating) in enumerate(rows, start=1)]
    for ts, line, user, parent, rating in sorted(numbered):
        kept.setdefault((user, parent), (line, ts, rating))
    core = reference_k_core(set(kept), k)
    return {pair: kept[pair] for pair in core}


def reference_loo(kept) -> dict[tuple[str, str], int]:
    by_user = defaultdict(list)
    for (user, item), (line, ts, _) in kept.items():
        by_user[user].append((ts, line, item))
    labels = {}
    for user, seq in by_user.items():
        seq.sort()  # by time, then line: the last is the latest
        for j, (_, _, item) in enumerate(seq):
            labels[(user, item)] = 2 if j == len(seq) - 1 else 1 if j == len(seq) - 2 else 0
    return labels


def written(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(original user, original item) -> the .inter row, through the dataset's maps."""
    ds = load_dataset(out)
    return {(ds.user_map.original[int(r["userID"])], ds.item_map.original[int(r["itemID"])]): r
            for r in read_inter(out / f"{out.name}.inter")}


def in_process(capsys, *args: object) -> CliResult:
    """The command's entry point in this process (faster than a subprocess; the subprocess
    tests check the same path as users meet it)."""
    from mgnm.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return CliResult(code, out.out, out.err)


# ---------------------------------------------------------------- splits and duplicates


def test_leave_last_out_by_hand():
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    times = np.array([5, 7, 7, 3, 9, 1, 4])
    # user 0: rows 3 (t3), 0 (t5), 1 (t7, earlier line), 2 (t7, later line): 2 test, 1 valid
    assert leave_last_out(users, times).tolist() == [0, 1, 2, 0, 2, 1, 2]
    # the same rows with the lines in the other order: row 1 is now the later one
    assert leave_last_out(users, times, np.arange(7)[::-1]).tolist() == [0, 2, 1, 0, 2, 1, 2]
    assert split_labels(users, np.zeros(7, int), 0, "loo", times).tolist() == \
        [0, 1, 2, 0, 2, 1, 2]


def test_timestamp_cuts_by_hand():
    times = np.array([1, 10, 15, 20, 25, 9.5])
    assert timestamp_cut(times, 10, 20).tolist() == [0, 1, 1, 2, 2, 0]
    assert split_labels(np.zeros(6, int), np.arange(6), 0, "timestamp", times, None, 10,
                        20).tolist() == [0, 1, 1, 2, 2, 0]
    with pytest.raises(ValueError):
        timestamp_cut(times, 21, 20)


def test_one_per_pair_earliest_and_latest_by_hand():
    users = np.array([0, 0, 0, 0, 1])
    items = np.array([7, 7, 7, 8, 7])
    times = np.array([5, 3, 3, 1, 2])
    assert one_per_pair(users, items, times, "earliest").tolist() == [1, 3, 4]  # tie: line 1
    assert one_per_pair(users, items, times, "latest").tolist() == [0, 3, 4]
    tie = np.array([3, 3, 3, 1, 2])
    assert one_per_pair(users, items, tie, "latest").tolist() == [2, 3, 4]  # tie: the last line


# ---------------------------------------------------------------- prepare amazon, 2023 files


def test_2023_items_parent_asin_k_core_loo_and_maps(tmp_path):
    rows = reviews_log()
    f = write_2023(tmp_path, rows)
    rec = prepare_amazon(f["reviews"], f["meta"], tmp_path / "toys", text=False, split="loo",
                         quiet=True)
    kept = reference(rows, 5)
    expected = reference_loo(kept)
    got = written(tmp_path / "toys")
    assert rec["release"] == "2023"
    # items are parent ASINs (no variant ASIN appears), the pairs are the reference's 5-core
    assert set(got) == set(kept)
    assert {i for _, i in got} <= set(PARENTS)
    # the review kept is the earliest (its time and rating), the labels the reference's
    assert {p: (int(r["timestamp"]), float(r["rating"])) for p, r in got.items()} == \
        {p: (ts, rating) for p, (_, ts, rating) in kept.items()}
    assert {p: int(r["x_label"]) for p, r in got.items()} == expected
    # per user: one test row, the latest; one validation row, the one before; n - 2 train
    per_user = defaultdict(list)
    for (user, _), r in got.items():
        per_user[user].append((int(r["timestamp"]), int(r["x_label"])))
    for seq in per_user.values():
        c = Counter(label for _, label in seq)
        assert (c[0], c[1], c[2]) == (len(seq) - 2, 1, 1)
        latest = max(t for t, _ in seq)
        assert next(t for t, lab in seq if lab == 2) == latest
        assert max(t for t, lab in seq if lab == 0) <= next(t for t, lab in seq if lab == 1)
    # the data holds ties at the end of a user's sequence, so the rule was exercised
    assert any(next(t for t, lab in seq if lab == 2) == next(t for t, lab in seq if lab == 1)
               for seq in per_user.values())
    steps = {s["step"]: s for s in rec["steps"]}
    raw_pairs = {(u, p) for u, p, *_ in rows}
    assert steps["read"]["records"] == len(rows)
    assert steps["deduplicate"]["dropped"] == len(rows) - len(raw_pairs)
    assert steps["loo split"]["users_without_train"] == 0
    # maps: title and first large image URL of each item, empty where the product has none
    ds = load_dataset(tmp_path / "toys")
    attrs = ds.item_map.attributes
    for idx, parent in enumerate(ds.item_map.original):
        n = PARENTS.index(parent)
        if n == len(PARENTS) - 1:
            assert (attrs["title"][idx], attrs["image_url"][idx]) == ("", "")
            continue
        url = "" if n % 5 == 2 else f"https://m.media-amazon.com/images/I/{parent}.jpg"
        assert (attrs["title"][idx], attrs["image_url"][idx]) == (f"Wooden train {n}", url)
    assert PARENTS[-1] in ds.item_map.original  # an item without metadata stays in the data
    assert rec["inputs"][1]["counts"]["items_without_meta"] == 1


def test_2023_timestamp_split_numbers_and_dates(tmp_path):
    rows = reviews_log(seed=4)
    f = write_2023(tmp_path, rows)
    t1, t2 = T0 + 6 * DAY_MS, T0 + 9 * DAY_MS  # both are times of some reviews
    prepare_amazon(f["reviews"], f["meta"], tmp_path / "a", text=False, split="timestamp",
                   valid_from=str(t1), test_from=str(t2), quiet=True)
    iso = [datetime.fromtimestamp(t / 1000, UTC).isoformat() for t in (t1, t2)]
    rec = prepare_amazon(f["reviews"], f["meta"], tmp_path / "b", text=False,
                         split="timestamp", valid_from=iso[0], test_from=iso[1], name="a",
                         quiet=True)
    assert (tmp_path / "a" / "a.inter").read_bytes() == (tmp_path / "b" / "a.inter").read_bytes()
    kept = reference(rows, 5)
    expected = {p: 0 if ts < t1 else 1 if ts < t2 else 2 for p, (_, ts, _) in kept.items()}
    got = {p: int(r["x_label"]) for p, r in written(tmp_path / "a").items()}
    assert got == expected
    assert {ts for _, ts, _ in kept.values()} >= {t1, t2}  # rows on the cuts themselves
    step = rec["steps"][-1]
    assert step["step"] == "timestamp split" and (step["valid_from"], step["test_from"]) == (t1, t2)
    no_train = {u for u, _ in expected} - {u for (u, _), lab in expected.items() if lab == 0}
    assert step["users_without_train"] == len(no_train)


def test_2023_item_sentence_by_hand():
    meta = meta_2023(PARENTS[7], 7)  # every part: title, store, features, description, categories
    assert item_sentence_2023(meta) == ("Wooden train 7 Acme Toys Solid beech Ages 7+ A train. "
                                        "Paint is safe 7. Toys & Games Trains")
    meta = meta_2023(PARENTS[5], 5)  # no features
    assert item_sentence_2023(meta) == ("Wooden train 5 Acme Toys A train. Paint is safe 5. "
                                        "Toys & Games Trains")
    meta = meta_2023(PARENTS[6], 6)  # no store, no categories
    assert item_sentence_2023(meta) == "Wooden train 6 Solid beech Ages 6+ A train. Paint is safe 6."
    assert item_sentence_2023({"title": "  A\t\tcup ", "features": ["", " red"]}) == "A cup red"
    assert item_sentence_2023({}) == ""


def test_2023_text_rows_follow_the_item_index(tmp_path, monkeypatch):
    """The encoder receives each item's sentence in item-index order; its rows are written."""
    import mgnm.prepare.features as features

    seen = []

    def fake_encode(texts, **kwargs):
        seen.extend(texts)
        return np.arange(len(texts) * 3, dtype=np.float32).reshape(len(texts), 3)

    monkeypatch.setattr(features, "encode_texts", fake_encode)
    monkeypatch.setattr(features, "require_text_encoder", lambda: None)
    f = write_2023(tmp_path, reviews_log())
    prepare_amazon(f["reviews"], f["meta"], tmp_path / "toys", quiet=True)
    ds = load_dataset(tmp_path / "toys")
    expected = [item_sentence_2023(meta_2023(p, PARENTS.index(p)))
                if p != PARENTS[-1] else "" for p in ds.item_map.original]
    assert seen == expected
    assert np.array_equal(np.load(tmp_path / "toys" / "text_feat.npy"),
                          np.arange(len(seen) * 3, dtype=np.float32).reshape(-1, 3))


# ---------------------------------------------------------------- prepare interactions


def test_interactions_loo_users_with_fewer_than_three_rows(tmp_path, capsys):
    """--k-core 1: a user with one row has only a test row, with two a validation and a test
    row; neither has a training row, so evaluation leaves them out (and says so)."""
    rows = [("solo", "x", "2021-01-01", 5), ("pair", "x", "2021-01-02", 5),
            ("pair", "y", "2021-01-01", 5), ("many", "x", "2021-01-03", 5),
            ("many", "y", "2021-01-03", 5), ("many", "z", "2021-01-01", 5),
            ("many", "w", "2021-01-02", 5)]
    src = write_csv(tmp_path / "log.csv", rows)
    rec = prepare_interactions(src, tmp_path / "ds", "user", "item", time="time", split="loo",
                               k_core=1, quiet=True)
    got = {p: r["x_label"] for p, r in written(tmp_path / "ds").items()}
    assert got == {("solo", "x"): "2", ("pair", "y"): "1", ("pair", "x"): "2",
                   ("many", "z"): "0", ("many", "w"): "0", ("many", "x"): "1",
                   ("many", "y"): "2"}  # many: x and y tie, y is on the later line
    assert rec["steps"][-1]["users_without_train"] == 2
    info = in_process(capsys, "info", tmp_path / "ds")
    assert info.code == 0
    assert "1 valid / 2 test users (no training interaction)" in info.out


def test_cli_interactions_loo_and_timestamp(tmp_path):
    """Installed ``mgnm``, two splits of a CSV log with ISO dates; --keep earliest."""
    rng = np.random.default_rng(9)
    rows = [(f"u{u}", f"i{int(rng.integers(0, 15))}",
             f"2022-03-{int(rng.integers(1, 29)):02d}T10:00:00", int(rng.integers(1, 6)))
            for u in range(30) for _ in range(int(rng.integers(4, 10)))]
    src = write_csv(tmp_path / "log.csv", rows)
    base = ["prepare", "interactions", src, "--user", "user", "--item", "item", "--time",
            "time", "--k-core", "2", "--keep", "earliest", "-q"]
    res = run_mgnm(*base, "--split", "loo", "-o", tmp_path / "loo")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    # -q prints only the result line: under loo every user has one validation and one test row
    users, valid, test = (int(x) for x in re.search(
        r": (\d+) users, .* valid (\d+) / test (\d+)\)", res.out).groups())
    assert res.out.count("\n") == 1 and valid == test == users
    res = run_mgnm(*base, "--split", "timestamp", "--valid-from", "2022-03-15",
                   "--test-from", "2022-03-22T10:00:00", "-o", tmp_path / "ts")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    stamp = {d: datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp()
             for d in ("2022-03-15", "2022-03-22T10:00:00")}
    # reference: earliest row per pair (then the line), 2-core, then the split
    kept = reference([(u, i, 0, datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp(), 0.0)
                      for u, i, t, _ in rows], 2)
    loo = {p: int(r["x_label"]) for p, r in written(tmp_path / "loo").items()}
    assert loo == reference_loo(kept)
    ts = {p: int(r["x_label"]) for p, r in written(tmp_path / "ts").items()}
    t1, t2 = stamp["2022-03-15"], stamp["2022-03-22T10:00:00"]
    assert ts == {p: 0 if t < t1 else 1 if t < t2 else 2 for p, (_, t, _) in kept.items()}
    assert set(ts.values()) == {0, 1, 2}


# ---------------------------------------------------------------- bad input, as users meet it


def no_output(tmp_path: Path, *names: str) -> None:
    for name in names:
        assert not (tmp_path / name).exists()
        assert not list(tmp_path.glob(f".{name}.*"))  # no partial directory either


def test_cli_2023_bad_lines_name_file_and_line(tmp_path, capsys):
    rows = reviews_log()
    f = write_2023(tmp_path, rows)
    good = [json.dumps(review_2023(*r)) for r in rows]

    def reviews_with(line: int, text: str, name: str) -> Path:
        path = tmp_path / name
        lines = good[:line - 1] + [text] + good[line - 1:]
        with gzip.open(path, "wt") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    record = review_2023("AGBAD", PARENTS[0], 0, T0, 4.0)
    no_parent = reviews_with(40, json.dumps({k: v for k, v in record.items()
                                             if k != "parent_asin"}), "no_parent.jsonl.gz")
    no_user = reviews_with(41, json.dumps({**record, "user_id": ""}), "no_user.jsonl.gz")
    bad_time = reviews_with(42, json.dumps({**record, "timestamp": "2021-05-01"}),
                            "bad_time.jsonl.gz")
    cut = reviews_with(43, json.dumps(record)[:50], "cut.jsonl.gz")
    meta_lines = gzip.open(f["meta"], "rt").read().splitlines()
    bad_meta = tmp_path / "meta_bad.jsonl.gz"
    with gzip.open(bad_meta, "wt") as fh:  # a Python literal is not JSON
        fh.write("\n".join(meta_lines[:2] + [repr(json.loads(meta_lines[2]))] + meta_lines[3:]))

    def prepare(reviews, meta, out, *extra):
        return ["prepare", "amazon", "--reviews", reviews, "--meta", meta, "--no-text", "-q",
                "-o", tmp_path / out, *extra]

    assert_user_error(run_mgnm(*prepare(no_parent, f["meta"], "o1")), str(no_parent),
                      "line 40", "'parent_asin'")
    assert_user_error(run_mgnm(*prepare(f["reviews"], bad_meta, "o2", "--split", "loo")),
                      str(bad_meta), "line 3", "not a JSON object")
    assert_user_error(in_process(capsys, *prepare(no_user, f["meta"], "o3")), str(no_user),
                      "line 41", "'user_id'")
    assert_user_error(in_process(capsys, *prepare(bad_time, f["meta"], "o4")), str(bad_time),
                      "line 42", "'2021-05-01' is not a number")
    assert_user_error(in_process(capsys, *prepare(cut, f["meta"], "o5")), str(cut), "line 43",
                      "not a JSON object")
    no_output(tmp_path, "o1", "o2", "o3", "o4", "o5")


def amazon_2014(tmp: Path) -> dict[str, Path]:
    """A 2014 review and metadata file (JSON lines; Python literals)."""
    reviews = tmp / "reviews_Toys_5.json.gz"
    with gzip.open(reviews, "wt") as fh:
        for u in range(6):
            for i in range(6):
                fh.write(json.dumps({"reviewerID": f"A{u}", "asin": f"B{i:09d}", "overall": 5.0,
                                     "unixReviewTime": 1_300_000_000 + i}) + "\n")
    meta = tmp / "meta_Toys.json.gz"
    with gzip.open(meta, "wt") as fh:
        for i in range(6):
            fh.write(repr({"asin": f"B{i:09d}", "title": f"Toy {i}"}) + "\n")
    return {"reviews": reviews, "meta": meta}


def test_cli_wrong_release_and_split_options(tmp_path, capsys):
    new = write_2023(tmp_path, reviews_log())
    old = amazon_2014(tmp_path)

    def prepare(reviews, meta, out, *extra):
        return ["prepare", "amazon", "--reviews", reviews, "--meta", meta, "--no-text", "-q",
                "-o", tmp_path / out, *extra]

    assert_user_error(run_mgnm(*prepare(old["reviews"], old["meta"], "o1", "--format", "2023")),
                      str(old["reviews"]), "line 1", "2014/2018 reviews",
                      "not the 2023 format asked for with --format 2023")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], old["meta"], "o2", "--format",
                                                  "2023")),
                      str(old["meta"]), "line 1", "2014/2018 metadata")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], old["meta"], "o3")),
                      str(new["reviews"]), str(old["meta"]), "one release")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], new["meta"], "o4",
                                                  "--split", "timestamp", "--valid-from",
                                                  str(T0))),
                      "--split timestamp needs --valid-from and --test-from")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], new["meta"], "o5",
                                                  "--split", "loo", "--valid-from", str(T0))),
                      "not --split loo")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], new["meta"], "o6",
                                                  "--split", "timestamp", "--valid-from",
                                                  "2021-01-01", "--test-from", "2020-01-01")),
                      "--valid-from 1609459200000 is after --test-from 1577836800000")
    # cuts in seconds against times in milliseconds: every row is a test row
    assert_user_error(run_mgnm(*prepare(new["reviews"], new["meta"], "o7", "--split",
                                        "timestamp", "--valid-from", "1600000000",
                                        "--test-from", "1600500000")),
                      str(new["reviews"]), "leaves no train interaction",
                      f"times run from {T0} to", "same unit as the times")
    assert_user_error(in_process(capsys, *prepare(new["reviews"], new["meta"], "o8",
                                                  "--image-features", tmp_path / "x.b")),
                      "no image-feature file", "image_url")
    src = write_csv(tmp_path / "log.csv", [("a", "b", 1, 5)])
    assert_user_error(in_process(capsys, "prepare", "interactions", src, "-o", tmp_path / "o9",
                                 "--user", "user", "--item", "item", "--split", "loo", "-q"),
                      "--split loo needs --time")
    no_output(tmp_path, *(f"o{n}" for n in range(1, 10)))


def test_2014_files_are_still_detected(tmp_path):
    old = amazon_2014(tmp_path)
    rec = prepare_amazon(old["reviews"], old["meta"], tmp_path / "toys", text=False, quiet=True)
    assert rec["release"] == "2014/2018"
    with pytest.raises(DataError, match="line 1: neither"):
        bare = tmp_path / "bare.jsonl"
        bare.write_text('{"who": 1}\n')
        prepare_amazon(bare, old["meta"], tmp_path / "x", text=False, quiet=True)


def test_a_directory_from_before_the_new_options_is_replaced(tmp_path):
    """A prepare.json written without the keys of options added since (format, valid_from,
    test_from) matches the same command run now, whose values for them are None."""
    old = amazon_2014(tmp_path)
    out = tmp_path / "toys"
    prepare_amazon(old["reviews"], old["meta"], out, text=False, k_core=2, quiet=True)
    record = json.loads((out / "prepare.json").read_text())
    for key in ("format", "valid_from", "test_from"):
        del record["args"][key]
    (out / "prepare.json").write_text(json.dumps(record))
    again = prepare_amazon(old["reviews"], old["meta"], out, text=False, k_core=2, quiet=True)
    assert again["args"]["format"] is None
    assert json.loads((out / "prepare.json").read_text())["args"]["format"] is None
    with pytest.raises(DataError, match=r"other arguments \(seed\)"):
        prepare_amazon(old["reviews"], old["meta"], out, text=False, k_core=2, seed=1,
                       quiet=True)
