#!/bin/bash
# Builds the `distill` binary with candle's CUDA kernels (sm_90: H100/H200) on a machine with no
# GPU and no system CUDA, then gzips it to bin/distill-cuda.gz for the GPU machine; and the GPU
# test executables, gzipped into bin/cuda-tests/ (benches/gpu/test.sh runs them there).
#
#   make cuda                         # or: bash scripts/build-cuda.sh
#   gunzip -c bin/distill-cuda.gz > /tmp/distill && chmod +x /tmp/distill   # on the GPU machine
#
# How: nvcc, headers and link-time libraries come from NVIDIA's PyPI wheels pinned to CUDA 13.0
# (a newer nvcc writes PTX that a 13.0 driver rejects; crt and nvvm must be pinned too or pip
# pulls 13.5), unversioned .so links are added for the linker, and a stub libcuda.so stands in
# for the driver library at link time (the real one is loaded on the GPU machine).
# Cold: about 16 minutes on 2 cores (14 of them in candle-kernels' nvcc step); then seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
APP=$PWD
BASE=${CUDA_BASE:-$APP/.cuda}
mkdir -p "$BASE" bin

[ -x "$BASE/cuda-venv/bin/pip" ] || python3 -m venv "$BASE/cuda-venv"
"$BASE/cuda-venv/bin/pip" install -q --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
C=$("$BASE/cuda-venv/bin/python" -c 'import nvidia,os;print(os.path.join(nvidia.__path__[0],"cu13"))')

( cd "$C/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf lib$l.so.13 lib$l.so; done && ln -sf libcurand.so.10 libcurand.so )

# candle-core turns on cudarc's dynamic linking, so the binary links -lcuda: a stub exporting
# every driver symbol cudarc declares, with the real soname.
cargo fetch -q
CUDARC_V=$(cargo metadata --format-version 1 --all-features | python3 -c 'import json,sys;print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC_V" | head -1)
mkdir -p "$C/lib/stubs"
grep -ohE 'pub unsafe fn cu[A-Z][A-Za-z0-9_]*' "$CUDARC/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u \
  | awk '{print "void " $1 "(void){}"}' > "$BASE/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 "$BASE/libcuda_stub.c" -o "$C/lib/stubs/libcuda.so"

export CUDA_ROOT=$C CUDA_HOME=$C PATH=$C/bin:$PATH CUDA_COMPUTE_CAP=90
export LIBRARY_PATH="$C/lib/stubs:$C/lib:${LIBRARY_PATH:-}"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$APP/target-cuda} cargo build --release --features cuda --bin distill
out=${CARGO_TARGET_DIR:-$APP/target-cuda}/release/distill
strip "$out" -o bin/distill-cuda
gzip -f bin/distill-cuda
ls -la bin/distill-cuda.gz

# The GPU tests (the kernels and the trainer against the CPU path: pipeline/model/tests/
# cuda_kernels.rs, pipeline/train/tests/cuda_training.rs), as executables for the GPU machine,
# which has no Rust: bin/cuda-tests/*.gz, run by benches/gpu/test.sh.
mkdir -p bin/cuda-tests
for t in distill-model:cuda_kernels distill-train:cuda_training; do
  pkg=${t%%:*} name=${t##*:}
  exe=$(CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$APP/target-cuda} cargo test --release -p "$pkg" --features cuda --test "$name" --no-run --message-format=json \
    | python3 -c 'import json,sys;print([m["executable"] for m in map(json.loads,sys.stdin) if m.get("reason")=="compiler-artifact" and m.get("executable")][-1])')
  strip "$exe" -o "bin/cuda-tests/$name"
  gzip -f "bin/cuda-tests/$name"
done
ls -la bin/cuda-tests
