#!/usr/bin/env bash
# The GPU tests: the project's CUDA kernels and the CUDA trainer checked against the CPU path
# (pipeline/model/tests/cuda_kernels.rs, pipeline/train/tests/cuda_training.rs), from the
# executables `make cuda` leaves in bin/cuda-tests/. Exits non-zero if any test fails.
#   bash benches/gpu/test.sh            # on a machine with an NVIDIA GPU
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
status=0
for gz in bin/cuda-tests/*.gz; do
  exe="$tmp/$(basename "$gz" .gz)"
  gunzip -c "$gz" > "$exe" && chmod +x "$exe"
  echo "== $(basename "$exe")"
  "$exe" --test-threads=1 --nocapture > "$tmp/log" 2>&1 || status=1
  # The measured differences, each test's verdict, and any failure message.
  grep -E "rel diff|^adamw|grad_accum|resumed|head size|cuda (f32|bf16)|^test |test result|panicked|differs|assert" "$tmp/log" || true
done
exit $status
