#!/usr/bin/env bash
# Everything to check when a GPU is lent, in one run (< 10 minutes on one H100/H200-class GPU),
# written to one log:
#   1. the machine (nvidia-smi, torch and its CUDA);
#   2. the extension built with its CUDA kernels (FORCE_CUDA=1, in place);
#   3. the CUDA ops against the references: float32, float16, bfloat16, forward and backward
#      (tests/test_ops_cuda.py), and nvcc's compile check (tests/test_ops_cuda_build.py);
#   4. a clip restored with every variant on CUDA, compared with the CPU frames (same file);
#   5. tools/benchmark.py --device cuda --fp16 for every variant (the table for
#      docs/benchmarks.md: ms/frame, fps, MC share, measured/floor).
# Every step runs even when an earlier one failed (the log shows all); the exit status is
# non-zero when any failed.
#
# Usage: bash tools/gpu_check.sh [LOG]   (default work_dirs/gpu_check/gpu_check.log)
#        MTU_GPU_FRAMES=20 MTU_GPU_WARMUP=5 (benchmark frames), PYTHON=python3
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
LOG=${1:-work_dirs/gpu_check/gpu_check.log}
OUT=$(dirname "$LOG")
mkdir -p "$OUT"
exec > >(tee "$LOG") 2>&1

failed=()
step() {
  local name=$1
  shift
  echo
  echo "=== $name ($(date +%T))"
  local start=$SECONDS
  if "$@"; then
    echo "--- $name: ok ($((SECONDS - start)) s)"
  else
    echo "--- $name: FAILED (status $?, $((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

machine() {
  nvidia-smi || true
  "$PY" - <<'EOF'
import torch
print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'cuDNN', torch.backends.cudnn.version())
assert torch.cuda.is_available(), 'torch sees no GPU'
assert torch.version.cuda is not None, 'torch is a CPU build: install a CUDA build of torch 2.13.0'
print('GPU', torch.cuda.get_device_name(0))
EOF
}

build() {
  # in place, as the tests import it; the MC ops only (the conv engine is CPU code, minutes to
  # compile, and the CPU frames below do not need it: they fall back to PyTorch without it)
  FORCE_CUDA=1 MTU_BUILD_ONLY=mtu_toolkit._ext MAX_JOBS=${MAX_JOBS:-16} \
    "$PY" setup.py build_ext --inplace >"$OUT/build.log" 2>&1
  local status=$?
  grep -E '^\[mtu_toolkit\]' "$OUT/build.log"
  [ $status -eq 0 ] || { tail -n 60 "$OUT/build.log"; return $status; }
  "$PY" -c "
import mtu_toolkit.ops as o
assert o.EXT_WITH_CUDA, f'the extension has no CUDA kernels ({o.FALLBACK_REASON})'
print('mtu_toolkit._ext with CUDA kernels')"
}

op_tests() {
  "$PY" -m pytest tests/test_ops_cuda.py tests/test_ops_cuda_build.py tests/test_ops.py -q \
    -p no:cacheprovider -rs -s -k 'not variant'
}

variant_frames() {
  "$PY" -m pytest tests/test_ops_cuda.py -q -p no:cacheprovider -rs -s -k variant
}

benchmark() {
  "$PY" tools/benchmark.py --device cuda --fp16 --warmup "${MTU_GPU_WARMUP:-5}" \
    --frames "${MTU_GPU_FRAMES:-20}" --out-dir "$OUT/benchmark"
}

start_all=$SECONDS
step machine machine
step "build (FORCE_CUDA=1)" build
step "CUDA ops vs references (fp32/fp16/bf16, fwd+bwd)" op_tests
step "every variant: CUDA clip vs CPU frames" variant_frames
step "benchmark --device cuda --fp16 (all variants)" benchmark
echo
echo "=== done in $((SECONDS - start_all)) s; log: $LOG"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all steps passed"
