#!/usr/bin/env bash
# GPU smoke check of the trainer: the same 4 steps of `train --bench` on a small Qwen2 student
# on the CPU (f32), on CUDA (f32) and on CUDA (bf16). The f32 losses must agree to ~1e-4 (same
# seeded init and data); bf16 must stay close. Prints the three loss lists.
#   DISTILL=/path/to/cuda/distill bash benches/gpu/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
for run in "cpu f32" "cuda f32" "cuda bf16"; do
  set -- $run
  printf '[train]\nmodel = "qwen2-nano"\nvocab_from_tokenizer = false\nbatch_size = 4\nseq_len = 128\ndevice = "%s"\ndtype = "%s"\n[train.loss]\nkd = 1.0\nce = 1.0\ncapture_temperature = 1.0\n' "$1" "$2" > "$tmp/c.toml"
  "$DISTILL" -q --config "$tmp/c.toml" --work-dir "$tmp/w" train --bench 3 --bench-warmup 1 \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print('$1 $2', ' '.join(f'{l:.6f}' for l in r['losses']))"
done
