#!/usr/bin/env bash
# One prepared session on a lent GPU (see README, "Performance"): the GPU tests, the training-step
# benchmark next to PyTorch, the per-layer benchmark, the loader and the conv pieces (fp32, TF32).
# Everything lands under $OUT.
#   OUT=out bash benchmarks/gpu_session.sh
set -o pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MINIALEX_CI=1
OUT="${OUT:-out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'cuda', cupy.cuda.runtime.runtimeGetVersion())" | tee -a "$OUT/gpu.txt"
timeout "${PYTEST_TIMEOUT:-200}" python3 -m pytest -m gpu -q -p no:cacheprovider --maxfail=10 \
    --ignore=tests/test_lessons.py > "$OUT/pytest_gpu.txt" 2>&1
echo "pytest -m gpu exit code: $?"; tail -n 15 "$OUT/pytest_gpu.txt"
timeout "${STEP_TIMEOUT:-240}" python3 benchmarks/gpu_step.py --steps "${STEPS:-20}" --warmup 3 --compare relu-apart,no-pad-k,loss-apart \
    --json "$OUT/step.json" 2>&1 | tee "$OUT/step.txt"
timeout "${LAYERS_TIMEOUT:-120}" python3 benchmarks/layers.py --device cuda:0 --torch --repeat 3 \
    --relu-in-conv > "$OUT/layers.txt" 2>&1; tail -n 22 "$OUT/layers.txt"
timeout "${LOADER_TIMEOUT:-60}" python3 benchmarks/loader.py --images 1024 --batches 6 \
    --input-size 227 --device cuda:0 2>&1 | tee "$OUT/loader.txt"
for tf32 in 0 1; do    # where each conv's time goes, piece by piece (fp32, then TF32 GEMMs)
    CUPY_TF32=$tf32 timeout "${GEMMS_TIMEOUT:-90}" python3 benchmarks/conv_gemms.py \
        --json "$OUT/conv_gemms_tf32_$tf32.json" > "$OUT/conv_gemms_tf32_$tf32.txt" 2>&1
    tail -n 40 "$OUT/conv_gemms_tf32_$tf32.txt"
done
