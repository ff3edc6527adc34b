#!/usr/bin/env bash
# The training CLI end to end on a lent GPU: GPU tests, the gradcheck health table, a prepared
# cache of the built-in set at the paper's stored size, two epochs of the paper preset from it
# with background workers, an exact-position resume in TF32, and a ten-crop evaluation.
#   OUT=out bash benchmarks/gpu_train_check.sh
set -o pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MINIALEX_CI=1
OUT="${OUT:-out}"; mkdir -p "$OUT"; CACHE="${CACHE:-/tmp/minialex_builtin259.h5}"
timeout 60 python3 -m pytest -m gpu -q -p no:cacheprovider --ignore=tests/test_lessons.py \
    > "$OUT/pytest_gpu.txt" 2>&1; echo "pytest -m gpu exit code: $?"; tail -n 3 "$OUT/pytest_gpu.txt"
timeout 40 python3 cli.py gradcheck 2>&1 | tail -n 14 | tee "$OUT/gradcheck.txt"
timeout 45 python3 cli.py prepare builtin --out "$CACHE" --base-size 259 --limit 1280 --no-progress 2>&1 | tail -n 1
timeout 60 python3 cli.py train --data "$CACHE" --epochs 2 --workers 8 --no-progress \
    --limit-val-batches 4 --out "$OUT/run" 2>&1 | tee "$OUT/train.txt"
timeout 40 python3 cli.py train --resume "$OUT/run" --epochs 3 --precision tf32 --workers 8 \
    --no-progress --limit-val-batches 4 2>&1 | tail -n 3 | tee -a "$OUT/train.txt"
timeout 40 python3 cli.py evaluate "$OUT/run/best.h5" --data "$CACHE" --ten-crop 2>&1 | tail -n 5
