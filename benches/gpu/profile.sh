#!/usr/bin/env bash
# Kernel-time profile of two `train --bench` steps (Nsight Compute, one metric per kernel):
# GPU time per kernel name, summed and sorted, beside the step's wall time, so host overhead
# (wall minus GPU time) and the costliest kernels show. LAYERS (default 2) keeps it quick;
# HEAD_CHUNK_ROWS (2048) as in run.sh.
#   DISTILL=/path/to/cuda/distill bash benches/gpu/profile.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
python3 -c "import json; c=json.load(open('configs/models/qwen2.5-0.5b.json')); c['num_hidden_layers']=${LAYERS:-2}; json.dump(c, open('$tmp/m.json','w'))"
printf '[train]\nmodel = "%s"\nvocab_from_tokenizer = false\nbatch_size = 2\nseq_len = 2048\ndevice = "cuda"\ndtype = "bf16"\nhead_chunk_rows = %s\n[train.loss]\nkd = 1.0\nce = 1.0\ncapture_temperature = 1.0\n' "$tmp/m.json" "${HEAD_CHUNK_ROWS:-2048}" > "$tmp/c.toml"
"$DISTILL" -q --config "$tmp/c.toml" --work-dir "$tmp/w" train --bench 2 --bench-warmup 1 > "$tmp/plain.json"
ncu --csv --metrics gpu__time_duration.sum "$DISTILL" -q --config "$tmp/c.toml" --work-dir "$tmp/w" train --bench 1 --bench-warmup 0 > "$tmp/ncu.csv" 2> "$tmp/ncu.err" || { tail -5 "$tmp/ncu.err"; exit 1; }
python3 - "$tmp/ncu.csv" "$tmp/plain.json" <<'PY'
import csv, json, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
head = rows[0]; rows = rows[1:]
ki, vi, ui = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows:
    v = float(r[vi].replace(",", "")); unit = r[ui]
    ns = v * {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(unit, 1)
    name = r[ki].split("(")[0][:60]; tot[name] += ns; cnt[name] += 1
plain = json.load(open(sys.argv[2]))
steps = 2  # --bench 1 runs one timed and one phase-timed step
print(f"wall per step (no profiler): {1000*sorted(plain['step_secs'])[0]:.1f} ms; GPU kernel time per step: {sum(tot.values())/1e6/steps:.1f} ms over {sum(cnt.values())//steps} kernels")
for name, ns in tot.most_common(25):
    print(f"{ns/1e6/steps:8.2f} ms  {cnt[name]//steps:5d}x  {name}")
PY
