"""benchmarks/bench_scaling.py's synthetic graphs: scaled sizes, the source's degree
distribution, distinct pairs, MMRec format the loader accepts; and its slope."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_scaling as bs  # noqa: E402

from mgnm.data import load_dataset  # noqa: E402


@pytest.fixture
def source_degrees(tiny_dir):
    return bs.degree_sequences(tiny_dir / "tiny.inter", np.random.default_rng(0))


def test_degree_sequences_are_the_source_file_counts(tiny_dir, source_degrees):
    user_deg, item_deg, where = source_degrees
    rows = [line.split("\t") for line in (tiny_dir / "tiny.inter").read_text().splitlines()[1:]]
    users = [int(r[0]) for r in rows]
    assert where == str(tiny_dir / "tiny.inter")
    assert user_deg.sum() == item_deg.sum() == len(rows)
    assert all(user_deg[u] == users.count(u) for u in set(users))


def test_scaled_graph_keeps_sizes_degrees_and_distinct_pairs(source_degrees, tmp_path):
    user_deg, item_deg, _ = source_degrees
    rng = np.random.default_rng(1)
    users, items, n_u, n_i = bs.synthetic_graph(user_deg, item_deg, 4, rng)
    assert n_u == 4 * user_deg.size
    assert n_i <= 4 * item_deg.size and items.max() == n_i - 1  # ids compact
    pairs = users.astype(np.int64) * n_i + items
    assert np.unique(pairs).size == pairs.size
    # every user's degree is one of the source's user degrees (no pair was lost on 4x items)
    assert set(np.bincount(users, minlength=n_u).tolist()) <= set(user_deg.tolist())
    assert abs(users.size / (4 * user_deg.sum()) - 1) < 0.1
    labels = bs.split_labels(users, rng)
    for u in range(n_u):  # per user: round(0.1 d) >= 1 test rows, as many validation rows
        lab = labels[users == u]
        k = max(1, round(0.1 * lab.size))
        assert (lab == 2).sum() == k and (lab == 1).sum() == k, (u, lab)
    d = bs.write_graph(tmp_path, "synth4x", users, items, labels, n_i, {"image": 3}, rng)
    ds = load_dataset(d)
    assert (ds.n_users, ds.n_items) == (n_u, n_i)
    assert len(ds.train.users) == int((labels == 0).sum())
    assert ds.features["image"].shape == (n_i, 3)


def test_power_law_fallback_has_babys_counts():
    user_deg, item_deg, where = bs.degree_sequences(None, np.random.default_rng(0))
    assert where.startswith("power law")
    assert (user_deg.size, item_deg.size) == bs.BABY_COUNTS[:2]
    assert user_deg.min() >= 5 and item_deg.min() >= 5


def test_slope_of_a_power_law_is_its_exponent():
    x = [1e5, 4e5, 1.6e6]
    assert bs.slope(x, [3 * v**1.5 for v in x]) == pytest.approx(1.5)
    assert bs.slope(x, [7 * v for v in x]) == pytest.approx(1.0)


def test_step_mode_times_single_steps_and_estimates_the_epoch(tiny_dir):
    """--steps (used for sizes too big for whole epochs): one row per model with the step
    medians, the epoch estimate = step x batches, and an evaluation pass."""
    rows = bs.measure(tiny_dir, ["lightgcn", "mgnm"], epochs=1, steps=3)
    assert [r["model"] for r in rows] == ["lightgcn", "mgnm"]
    for r in rows:
        assert r["steps_measured"] == 3 and r["epoch_estimated"] is True
        assert r["step_ms"] > 0 and r["eval_s"] > 0
        assert r["epoch_s"] == pytest.approx(r["step_ms"] / 1000 * r["batches_per_epoch"])
    no_eval = bs.measure(tiny_dir, ["lightgcn"], epochs=1, steps=2, no_eval=True)
    assert no_eval[0]["eval_s"] is None


def test_a_compared_version_is_measured_from_its_own_src(tiny_dir, tmp_path):
    """bench_goals --compare NAME=SRC: the measuring process imports mgnm from SRC, and a
    SRC without it is an error instead of a silent measurement of the installed package."""
    import bench_epoch

    src = Path(bench_epoch.__file__).resolve().parents[1] / "src"
    row = bench_epoch.run_fresh(tiny_dir, "bpr", epochs=1, threads=1, src=str(src))
    assert Path(row["mgnm"]) == src / "mgnm"
    with pytest.raises(RuntimeError, match="not from there"):
        bench_epoch.run_fresh(tiny_dir, "bpr", epochs=1, threads=1, src=str(tmp_path))


def test_goal_summary_is_the_median_over_rounds_with_the_range():
    import bench_goals

    rows = [{"workload": "mgnm-tiktok", "threads": 2, "code": "current", "round": i,
             "epoch_s": e, "eval_s": v, "peak_rss_mb": m}
            for i, (e, v, m) in enumerate([(3.0, 0.2, 500), (2.0, 0.1, 520), (9.0, 0.3, 510)], 1)]
    rows.append({**rows[0], "code": "before", "epoch_s": 4.0})
    table = bench_goals.summary(rows)
    assert "median over 3 rounds" in table
    line = next(x for x in table.splitlines() if "| current |" in x)
    # median 3.0 of (3, 2, 9), range 2-9; eval median 0.2; the highest peak RSS
    assert line == ("| mgnm-tiktok | 2 | current | 3.00 (2.00-9.00) | 0.20 (0.10-0.30) | 520 | "
                    "epoch_s <= 2.5: not met |")
    assert "| before | 4.00 (4.00-4.00) |" in table


def test_kernel_bench_times_whole_tables_against_batch_rows(tiny_dir):
    """bench_kernels.py --only rows on a dataset directory: every variant, one line each."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"
    out = subprocess.run([sys.executable, str(script), "--only", "rows", "--repeats", "1",
                          "--graph", str(tiny_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stdout.splitlines() if x.startswith("| rows | tiny: ")]
    assert [x.split(":")[1].split("|")[0].strip() for x in lines] == ["whole tables", "batch rows",
                                                                  "batch rows, indexed"]
    assert all(float(x.split("|")[3].split()[0]) > 0 for x in lines)


def test_a_merge_of_earlier_runs_keeps_their_rows_and_records_its_arguments(tiny_dir, tmp_path):
    import json
    import subprocess

    def row(scale, model, seconds):
        return {"scale": scale, "users": 3 * scale, "items": 2 * scale,
                "interactions": 6 * scale, "model": model, "epoch_s": seconds,
                "epoch_cpu_s": seconds, "eval_s": None, "eval_cpu_s": None,
                "batches_per_epoch": 2 * scale, "peak_rss_mb": 10 * scale}

    (tmp_path / "l.json").write_text(json.dumps({"rows": [row(1, "lightgcn", 1.0),
                                                          row(4, "lightgcn", 4.0)]}))
    (tmp_path / "m.json").write_text(json.dumps({"rows": [row(1, "mgnm", 2.0)]}))
    argv = ["--scales", "", "--source", str(tiny_dir / "tiny.inter"), "--include",
            str(tmp_path / "l.json"), "--include", str(tmp_path / "m.json"),
            "--json", str(tmp_path / "out.json")]
    script = Path(bs.__file__)
    subprocess.run([sys.executable, str(script), *argv], check=True, capture_output=True)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["argv"] == argv
    assert [(r["scale"], r["model"]) for r in out["rows"]] == [(1, "lightgcn"), (1, "mgnm"),
                                                               (4, "lightgcn")]
    # epoch seconds x4 over 4x the interactions: slope 1 on the log-log axes
    assert out["slopes"]["lightgcn"]["epoch_s"] == pytest.approx(1.0)
