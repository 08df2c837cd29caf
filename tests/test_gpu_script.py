"""benchmarks/gpu.sh's CPU dry run (``--device cpu --epochs 1``), as CI runs it: the whole
script (torch check, mgnm from this checkout, the CUDA-marked tests, the timed run), its
printed figures checked against the run's own log and result files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mgnm.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def gpu_sh(*args: object, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPT), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, time.perf_counter() - t0


def figure(pattern: str, text: str) -> float:
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    return float(m.group(1))


def test_cpu_dry_run_prints_the_run_figures(tiny_dir, tmp_path):
    run_dir, js = tmp_path / "run", tmp_path / "figures.json"
    proc, wall = gpu_sh("--device", "cpu", "--epochs", 1, "--data", tiny_dir,
                        "--out", run_dir, "--json", js)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in out + proc.stderr
    # torch is the one this interpreter has, and mgnm is this checkout's
    assert f"== torch found: {torch.__version__} " in out
    assert f"== mgnm from {ROOT / 'src' / 'mgnm'}" in out
    # the CUDA-marked tests ran: one per model plus the evaluator's, skipped without a GPU
    n_cuda = len(MODELS) + 1
    if not torch.cuda.is_available():
        assert re.search(rf"^{n_cuda} skipped, \d+ deselected", out, re.MULTILINE), out
        assert "torch.cuda.is_available() is False" in out
    # one epoch, its seconds as the trainer logged them
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and len(re.findall(r"^epoch \d+:", out, re.MULTILINE)) == 1
    logged = log[0]["train_seconds"] + log[0]["eval_seconds"]
    assert figure(r"^epoch 1: ([\d.]+) s", out) == round(logged, 3)
    assert figure(r"^seconds per epoch: mean ([\d.]+)", out) == round(logged, 3)
    assert figure(r"^epochs: (\d+) \(best epoch 1, stopped early: no\)", out) == 1
    total = figure(r"^total seconds: ([\d.]+)", out)
    assert logged <= total + 0.01 and total < wall
    assert "peak GPU memory" not in out  # CPU: no GPU figure, the process's peak RSS instead
    rss = figure(r"^peak RSS: ([\d.]+) MiB", out)
    assert 50 < rss < 8192
    # the test metrics printed are the run's result.json
    result = json.loads((run_dir / "result.json").read_text())
    assert figure(r"recall@20=([\d.]+)", out) == round(result["test"]["recall@20"], 4)
    figures = json.loads(js.read_text())
    assert figures["epoch_seconds"] == [logged] and figures["test"] == result["test"]
    assert figures["peak_gpu_mib"] is None and figures["epochs"] == result["epochs_run"] == 1


def test_cuda_without_a_gpu_stops_with_one_message(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the message is for machines without one")
    proc, _ = gpu_sh("--data", tiny_dir, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "gpu.sh: torch.cuda.is_available() is False; use --device cpu for a dry run"]


def test_unknown_option_is_refused(tiny_dir):
    proc, _ = gpu_sh("--devices", "cpu", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gpu.sh: unknown option --devices (see --help)"
