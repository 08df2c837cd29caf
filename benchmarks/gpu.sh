#!/usr/bin/env bash
# The GPU check, in one script, for a CUDA machine:
#   1. keeps the CUDA PyTorch it finds there: mgnm is imported from this checkout (src/ on
#      PYTHONPATH) when its other dependencies are present; otherwise a venv with
#      --system-site-packages gets `pip install --no-deps -e .` plus the missing non-torch
#      dependencies, under a constraint pinning the torch it found (never replaced; checked after);
#   2. runs the test suite's CUDA-marked tests (pytest -m cuda);
#   3. runs MGNM on TikTok to early stopping (benchmarks/bench_gpu_run.py) and prints seconds
#      per epoch, total seconds and peak GPU memory.
#
#   bash benchmarks/gpu.sh                                   # on the GPU machine
#   bash benchmarks/gpu.sh --device cpu --epochs 1 --data DIR  # dry run (CI: tests/test_gpu_script.py)
#
# Options: --device cuda|cpu (default cuda), --epochs N (default: the config's, to early
# stopping), --data DIR (default $DATA or ../shared/data/tiktok), --model NAME (default mgnm),
# --skip-tests, --json PATH (the figures as JSON), --out DIR (the run directory: log.jsonl,
# result.json). Environment: PYTHON (default: python3, or python), VENV (where a
# venv is made when one is needed; default .venv-gpu), PIP_FIND_LINKS/PIP_NO_INDEX (pip's own,
# for a machine without a package index).
set -euo pipefail

DEVICE=cuda
EPOCHS=""
DATA_DIR="${DATA:-../shared/data/tiktok}"
MODEL=mgnm
RUN_TESTS=1
JSON=""
OUT_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --epochs) EPOCHS="$2"; shift 2 ;;
        --data) DATA_DIR="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --json) JSON="$2"; shift 2 ;;
        --out) OUT_DIR="$2"; shift 2 ;;
        --skip-tests) RUN_TESTS=0; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu.sh: --device must be cuda or cpu" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

torch_where() { "$1" -c 'import torch; print(torch.__version__, torch.__file__, torch.cuda.is_available())'; }

if ! TORCH_BEFORE="$(torch_where "$PY" 2>/dev/null)"; then
    echo "gpu.sh: $PY cannot import torch; install the machine's CUDA PyTorch first" >&2
    exit 1
fi
echo "== torch found: $TORCH_BEFORE ($PY)"
if [ "$DEVICE" = cuda ] && [ "${TORCH_BEFORE##* }" != True ]; then
    echo "gpu.sh: torch.cuda.is_available() is False; use --device cpu for a dry run" >&2
    exit 1
fi

# 1. mgnm from this checkout, torch untouched
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import mgnm.cli, numpy, pydantic, yaml, click, rich' 2>/dev/null; then
    VENV="${VENV:-$ROOT/.venv-gpu}"
    echo "== mgnm's dependencies are missing: making $VENV (--system-site-packages)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
    PY="$VENV/bin/python"
    PIN="$(mktemp)"
    "$PY" -c 'import torch; print("torch==" + torch.__version__)' > "$PIN"
    "$PY" -m pip install -q --no-deps -e "$ROOT"
    "$PY" -m pip install -q -c "$PIN" "numpy>=1.24" "pydantic>=2.5,<3" "PyYAML>=6.0" "click>=8.1" \
        "rich>=13.0" "pytest>=7.4"
    rm -f "$PIN"
fi
"$PY" -c 'import pytest' 2>/dev/null || "$PY" -m pip install -q pytest
TORCH_AFTER="$(torch_where "$PY")"
if [ "$TORCH_AFTER" != "$TORCH_BEFORE" ]; then
    echo "gpu.sh: torch changed ($TORCH_BEFORE -> $TORCH_AFTER); stopping" >&2
    exit 1
fi
echo "== mgnm from $("$PY" -c 'import mgnm, os; print(os.path.dirname(mgnm.__file__))')"

# 2. the CUDA-marked tests (skipped, with their reason, without a GPU)
if [ "$RUN_TESTS" = 1 ]; then
    echo "== pytest -m cuda"
    "$PY" -m pytest -q -m cuda -p no:cacheprovider "$ROOT/tests/test_cuda.py"
fi

# 3. the whole run
echo "== $MODEL on $DATA_DIR, device $DEVICE${EPOCHS:+, at most $EPOCHS epoch(s)}"
ARGS=(--data "$DATA_DIR" --model "$MODEL" --device "$DEVICE")
[ -n "$EPOCHS" ] && ARGS+=(--epochs "$EPOCHS")
[ -n "$JSON" ] && ARGS+=(--json "$JSON")
[ -n "$OUT_DIR" ] && ARGS+=(--out "$OUT_DIR")
"$PY" "$ROOT/benchmarks/bench_gpu_run.py" "${ARGS[@]}"
