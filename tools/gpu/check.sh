#!/usr/bin/env bash
# Runs on the GPU machine (no Rust there): the GPU test suite and the GPU benchmarks from
# target/gpu-bundle (made by tools/gpu/bundle.sh), writing a report to $OUT (or ./gpu-report).
# Without a GPU it fails at the first step and says why.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=target/gpu-bundle
report="${OUT:-gpu-report}"
mkdir -p "$report"
log="$report/report.txt"
say() { echo "$*" | tee -a "$log"; }
: >"$log"
[ -x "$bundle/gradtape" ] && [ -x "$bundle/cuda-tests" ] && [ -x "$bundle/gradcheck-tests" ] || {
    say "check.sh: $bundle lacks the binaries: run tools/gpu/bundle.sh first and carry the folder"
    exit 2
}
# NVRTC and cuBLAS come from the CUDA toolkit; the driver's libcuda is already on the path.
if command -v nvcc >/dev/null; then
    export LD_LIBRARY_PATH="$(dirname "$(dirname "$(command -v nvcc)")")/lib64:${LD_LIBRARY_PATH:-}"
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export GRADTAPE_KERNEL_CACHE="$report/kernel-cache"
say "== $(date -u +%FT%TZ) $(uname -m)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log" || {
    say "check.sh: nvidia-smi failed: no NVIDIA GPU here"
    exit 2
}
status=0
say "== GPU tests (GRADTAPE_REQUIRE_GPU=1: a skip fails)"
GRADTAPE_REQUIRE_GPU=1 GRADTAPE_REQUIRE_NVRTC=1 timeout 240 "$bundle/cuda-tests" --test-threads 1 2>&1 |
    tee -a "$log" || status=1
say "== gradient checks on the GPU"
GRADTAPE_REQUIRE_GPU=1 timeout 240 "$bundle/gradcheck-tests" differentiable_ops_on_the_gpu 2>&1 |
    tee -a "$log" || status=1
say "== GPU benchmarks"
# the compiled workloads also time their CUDA-graph launch (cuda_graph_median_us in the JSON)
for w in seed mlp matmul seed-compiled mlp-compiled hvp-compiled; do
    timeout 120 "$bundle/gradtape" bench --device cuda --json "$w" 2>&1 | tee -a "$log" || status=1
done
say "== CPU side by side (same machine)"
timeout 120 "$bundle/gradtape" bench --json seed mlp 2>&1 | tee -a "$log" || status=1
say "== exit $status"
exit $status
