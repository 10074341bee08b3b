#!/usr/bin/env bash
# GPU smoke check of the trainer binary: the same 4 steps of `train --bench` on a small Qwen2
# student on the CPU (f32), on CUDA (f32) and on CUDA (bf16), same seeded init and data.
# Prints the three loss lists and fails unless CUDA f32 is within 1e-5 (relative) of the CPU
# and bf16 within 1e-3. (benches/gpu/test.sh has the finer per-kernel checks.)
#   DISTILL=/path/to/cuda/distill bash benches/gpu/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
for run in "cpu f32" "cuda f32" "cuda bf16"; do
  set -- $run
  printf '[train]\nmodel = "qwen2-nano"\nvocab_from_tokenizer = false\nbatch_size = 4\nseq_len = 128\ndevice = "%s"\ndtype = "%s"\n[train.loss]\nkd = 1.0\nce = 1.0\ncapture_temperature = 1.0\n' "$1" "$2" > "$tmp/c.toml"
  "$DISTILL" -q --config "$tmp/c.toml" --work-dir "$tmp/w" train --bench 3 --bench-warmup 1 > "$tmp/$1-$2.json"
done
python3 - "$tmp" <<'PY'
import json, sys
runs = {name: json.load(open(f"{sys.argv[1]}/{name.replace(' ', '-')}.json"))["losses"] for name in ["cpu f32", "cuda f32", "cuda bf16"]}
for name, losses in runs.items():
    print(name, " ".join(f"{l:.6f}" for l in losses))
bad = []
for name, tol in [("cuda f32", 1e-5), ("cuda bf16", 1e-3)]:
    worst = max(abs(a - b) / abs(b) for a, b in zip(runs[name], runs["cpu f32"]))
    print(f"{name}: largest relative difference to cpu f32 {worst:.2e} (limit {tol:g})")
    if not worst <= tol:
        bad.append(name)
sys.exit(f"losses differ: {bad}" if bad else 0)
PY
