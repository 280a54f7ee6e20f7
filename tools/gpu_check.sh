#!/usr/bin/env bash
# The GPU check, in one command on a machine with an NVIDIA GPU (`make gpu-check` runs it):
#   1. build the native ops for the GPU present (CUDA kernels required: the CI gate is on);
#   2. run the whole test suite with pytest-xdist (`-n auto`, one CPU thread per worker), the
#      `cuda`-marked tests included;
#   3. run the GPU benchmark (tools/benchmark_gpu.py -> benchmarks/ops_cuda.json), one PointNeXt-S training
#      epoch with amp bf16 and off (tools/benchmark_train.py -> benchmarks/train_amp_cuda.json) and the point
#      transformer encoders' forward, training step and SDPA kernels (tools/benchmark_encoders.py ->
#      benchmarks/encoders_cuda.json) and the pre-training steps of issues 12, 13 and 14 §6: I2P-MAE with a ViT-B/16
#      teacher, CLIPAlign hard negatives, Cross-MoST self-training, the similarity precompute
#      (tools/benchmark_pretext_steps.py -> benchmarks/pretext_steps_cuda.json);
#   4. print one table: the steps, the kernel timings, the model throughput, the targets, then the amp,
#      encoder and pre-training tables.
# Every step has a time limit, so the table always prints: the suite is cut off after GPU_CHECK_TEST_TIMEOUT
# (180 s), the benchmark after GPU_CHECK_BENCH_TIMEOUT (90 s), the amp epochs after GPU_CHECK_AMP_TIMEOUT (75 s),
# the encoders after GPU_CHECK_ENCODERS_TIMEOUT (60 s), the pre-training steps after GPU_CHECK_PRETEXT_TIMEOUT
# (100 s; their JSON is written after each part, so a cut-off run still shows the parts it finished). The limits
# add up to 8.5 minutes besides the build, within a 10-minute command. Exits non-zero when a step failed.
#
# Python: .venv/bin/python when present (after `make install`), else python3. When .whl/ holds
# wheels (`make gpu-wheels`, for a machine without network), they are installed into
# $GPU_CHECK_SITE (default /tmp/site) and put on PYTHONPATH first.
# Logs, the steps file and the benchmark JSON go to $GPU_CHECK_OUT (default build/gpu_check); the
# JSON is copied to benchmarks/ops_cuda.json when the benchmark succeeds.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if [[ -x .venv/bin/python ]]; then PYTHON=${PYTHON:-$REPO/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
OUT_DIR=${GPU_CHECK_OUT:-build/gpu_check}
STEPS="$OUT_DIR/steps.tsv"
REPORT="$OUT_DIR/ops_cuda.json"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR" benchmarks
rm -f "$REPORT"
: >"$STEPS"
failed=0

# step NAME STATUS SECONDS DETAIL: one row of the final table.
step() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$STEPS"; [[ $2 == ok ]] || failed=1; }

if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=${GPU_CHECK_SITE:-/tmp/site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "error: installing .whl/*.whl failed" >&2; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO/third_party/pointnet2_ops:$REPO${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "error: no CUDA device is visible to $PYTHON; run make gpu-check on a machine with an NVIDIA GPU" >&2
  exit 2
fi

# 1. Build in place for the present GPU (TORCH_CUDA_ARCH_LIST unset: torch targets the visible GPU).
start=$SECONDS
(cd third_party/pointnet2_ops && MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PYTHON" setup.py -q build_ext --inplace --force) \
  >"$OUT_DIR/build.log" 2>&1
arch=$("$PYTHON" -c "import torch; print('sm_%d%d' % torch.cuda.get_device_capability())")
if CI=true "$PYTHON" -m pointnet2_ops >>"$OUT_DIR/build.log" 2>&1 \
   && "$PYTHON" -c "import pointnet2_ops, sys; sys.exit(not pointnet2_ops.has_cuda_kernels())"; then
  step build ok $((SECONDS - start)) "$arch, CUDA kernels compiled"
else
  step build FAILED $((SECONDS - start)) "no CUDA kernels for $arch: see $OUT_DIR/build.log"
  tail -30 "$OUT_DIR/build.log" >&2
fi

# 2. The whole suite. One CPU thread per worker: -n auto already starts one worker per core.
start=$SECONDS
xdist=(-n "${GPU_CHECK_WORKERS:-auto}") how="xdist -n ${GPU_CHECK_WORKERS:-auto}"
"$PYTHON" -c "import xdist" 2>/dev/null || { xdist=(); how="serial: pytest-xdist is not installed"; }
CI=true OMP_NUM_THREADS=1 timeout "${GPU_CHECK_TEST_TIMEOUT:-180}" \
  "$PYTHON" -m pytest -q -p no:cacheprovider "${xdist[@]}" tests 2>&1 | tee "$OUT_DIR/tests.log"
status=${PIPESTATUS[0]}
counts=$(grep -E '[0-9]+ (passed|failed|error)' "$OUT_DIR/tests.log" | tail -1 | sed -E 's/=+//g; s/^ +| +$//g')
case $status in
  0) step tests ok $((SECONDS - start)) "$counts ($how)" ;;
  124) step tests TIMEOUT $((SECONDS - start)) "cut off after ${GPU_CHECK_TEST_TIMEOUT:-180} s; $OUT_DIR/tests.log" ;;
  *) step tests FAILED $((SECONDS - start)) "${counts:-pytest exit $status}; see $OUT_DIR/tests.log" ;;
esac

# benchmark NAME LIMIT JSON DEST CMD...: run CMD, which writes JSON, for at most LIMIT seconds (its output in
# NAME.log); copy JSON to DEST when it succeeds. One row of the table either way.
benchmark() {
  local name=$1 limit=$2 json=$3 dest=$4 start=$SECONDS
  shift 4
  rm -f "$json"
  if timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1; then
    cp "$json" "$dest"
    step "$name" ok $((SECONDS - start)) "$dest"
  else
    step "$name" FAILED $((SECONDS - start)) "see $OUT_DIR/$name.log"
    tail -30 "$OUT_DIR/$name.log" >&2
  fi
}

# 3. The GPU benchmark of the kernels.
benchmark benchmark "${GPU_CHECK_BENCH_TIMEOUT:-90}" "$REPORT" benchmarks/ops_cuda.json \
  "$PYTHON" tools/benchmark_gpu.py --out "$REPORT"
# 3b. Mixed precision: one PointNeXt-S training epoch on synthetic data with amp bf16 and off (instances/s, peak memory).
benchmark amp "${GPU_CHECK_AMP_TIMEOUT:-75}" "$OUT_DIR/train_amp.json" benchmarks/train_amp_cuda.json \
  "$PYTHON" tools/benchmark_train.py --device cuda --amp bf16,off --no-compare --out "$OUT_DIR/train_amp.json"
# 3c. The point transformer encoders (PointViT, PointM2AE): forward batch 128 and training step batch 32 with amp
# bf16 and off, peak memory, fused vs math SDPA kernels.
benchmark encoders "${GPU_CHECK_ENCODERS_TIMEOUT:-60}" "$OUT_DIR/encoders.json" benchmarks/encoders_cuda.json \
  "$PYTHON" tools/benchmark_encoders.py --device cuda --out "$OUT_DIR/encoders.json"
# 3d. Pre-training steps (issues 12, 13 and 14 §6), bf16: I2P-MAE at batch 64 x 2048 with a random ViT-B/16 teacher
# (s/step, teacher share, peak memory; targets <= 0.3 s/step, <= 22 GB), CLIPAlign hardneg-i2i at batch 256 with
# precomputed image embeddings (steps/s), Cross-MoST at batch 128 pairs (random ViT-B/16, Point-BERT, EMA teacher:
# s/step, teacher and EMA shares, peak memory), tools/precompute_similarity.py with a random ViT-B-32 (objects/s).
benchmark pretext "${GPU_CHECK_PRETEXT_TIMEOUT:-100}" "$OUT_DIR/pretext_steps.json" benchmarks/pretext_steps_cuda.json \
  "$PYTHON" tools/benchmark_pretext_steps.py --device cuda --out "$OUT_DIR/pretext_steps.json"

# 4. One table.
echo
"$PYTHON" tools/benchmark_gpu.py --table "$REPORT" --steps "$STEPS" | tee "$OUT_DIR/table.txt"
grep -A8 -i "amp" "$OUT_DIR/amp.log" 2>/dev/null | tee -a "$OUT_DIR/table.txt"
if [[ -f "$OUT_DIR/encoders.json" ]]; then
  echo | tee -a "$OUT_DIR/table.txt"
  "$PYTHON" tools/benchmark_encoders.py --table "$OUT_DIR/encoders.json" | tee -a "$OUT_DIR/table.txt"
fi
if [[ -f "$OUT_DIR/pretext_steps.json" ]]; then
  echo | tee -a "$OUT_DIR/table.txt"
  "$PYTHON" tools/benchmark_pretext_steps.py --table "$OUT_DIR/pretext_steps.json" | tee -a "$OUT_DIR/table.txt"
fi
exit $failed
