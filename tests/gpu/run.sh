#!/usr/bin/env bash
# tests/gpu/run.sh OUTDIR - the one prepared script for a GPU machine.
# Builds vkv with CUDA (build dir: build-gpu/ in the checkout), runs the GPU
# kernel-vs-CPU tests, starts a real vkvd on --backend cuda with two client
# processes (tests/gpu/gpu_pair: one encodes and puts, the other fetches and
# decodes into a paged cache, bit-identical), the vLLM connector core with
# CUDA caches (when a CUDA torch is there), runs bench/cuda_bench and
# bench/attend_cuda_bench (vkv_cuda_attend vs fp16 attention), and
# writes every log and result into OUTDIR (summary: OUTDIR/SUMMARY.txt).
# Sized for ~5 minutes on an H100/H200 (most of it the build).
set -u
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$(realpath -m "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B="$ROOT/build-gpu"
mkdir -p "$OUT"
SUM="$OUT/SUMMARY.txt"
: >"$SUM"
say() { echo "$*" | tee -a "$SUM"; }
step() { # step NAME LOG CMD... : runs CMD with its output in OUT/LOG
    local name=$1 log=$2; shift 2
    local t0=$SECONDS
    "$@" >"$OUT/$log" 2>&1
    local rc=$?
    say "$(printf '%-28s rc=%-3s %4ss  (%s)' "$name" "$rc" "$((SECONDS - t0))" "$log")"
    return $rc
}
export PATH="/usr/local/cuda/bin:$PATH"
{ nvidia-smi; nvcc --version; uname -a; } >"$OUT/machine.txt" 2>&1
say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"

step configure configure.log cmake -S "$ROOT" -B "$B" -DVKV_CUDA=ON -DCMAKE_BUILD_TYPE=Release || exit 1
step build build.log cmake --build "$B" -j"$(nproc)" --target gpu_codec gpu_attend gpu_pair vkvd vkv cuda_bench attend_cuda_bench || exit 1
step "gpu tests (ctest -L gpu)" gpu_tests.log ctest --test-dir "$B" -L gpu --output-on-failure --timeout 600

# A real vkvd on the CUDA backend and two worker processes.
RUN=$(mktemp -d /tmp/vkv-gpu.XXXXXX)
chmod 700 "$RUN"
"$B/daemon/vkvd" --rundir "$RUN" --state-dir "$RUN/state" --backend cuda --capacity 2G \
    --slab-size 1G --cold-max 0 >"$OUT/vkvd.log" 2>&1 &
VKVD=$!
for _ in $(seq 100); do [ -S "$RUN/vkvd.sock" ] && break; sleep 0.1; done
if [ -S "$RUN/vkvd.sock" ]; then
    step "pair: put (process 1)" pair_put.log "$B/tests/gpu/gpu_pair" put "$RUN" 8
    step "pair: get (process 2)" pair_get.log "$B/tests/gpu/gpu_pair" get "$RUN" 8
    grep -h "ms" "$OUT/pair_put.log" "$OUT/pair_get.log" | sed 's/^/    /' | tee -a "$SUM"
else
    say "vkvd did not start on the cuda backend (see vkvd.log)"
fi
kill -TERM "$VKVD" 2>/dev/null
wait "$VKVD"
say "vkvd exit status after SIGTERM: $?"
rm -rf "$RUN"

# The vLLM connector core with CUDA KV caches (vkv_cuda_decode_paged with
# NHD/HND/FlashInfer strides, load errors, leases) when a Python with a CUDA
# torch is there ($VKV_VLLM_PYTHON, the install-vllm.sh venv, or python3).
PY=${VKV_VLLM_PYTHON:-/opt/vkv-vllm-venv/bin/python}
[ -x "$PY" ] || PY=python3
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    step "connector core on cuda" connector_cuda.log "$PY" "$ROOT/tests/client/connector_test.py" \
        "$B/daemon/vkvd" "$B/client/libvkv.so" --cuda
    tail -3 "$OUT/connector_cuda.log" | sed 's/^/    /' | tee -a "$SUM"
else
    say "connector core on cuda: skipped (no Python with a CUDA torch; scripts/install-vllm.sh)"
fi

step "bench/cuda_bench" cuda_bench.txt "$B/bench/cuda_bench"
sed 's/^/    /' "$OUT/cuda_bench.txt" >>"$SUM"
step "bench/attend_cuda_bench" attend_cuda_bench.txt "$B/bench/attend_cuda_bench"
sed 's/^/    /' "$OUT/attend_cuda_bench.txt" >>"$SUM"
say "results in $OUT"
