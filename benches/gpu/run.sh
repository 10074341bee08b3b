#!/usr/bin/env bash
# GPU training benchmark: `distill train --bench` (candle, bf16) beside PyTorch eager and
# torch.compile on the same Qwen2.5-0.5B-shaped student, batch, sequence and loss, in one run.
#
#   DISTILL=/path/to/cuda/distill bash benches/gpu/run.sh [OUT_DIR]
#
# Needs an NVIDIA GPU, the CUDA build of distill (`make cuda`; bin/distill-cuda.gz is unpacked
# when DISTILL is unset) and python3 with torch + transformers. Env: BATCH (2), SEQ (2048),
# TOPK (20), STEPS (10), WARMUP (2), MODES ("candle eager compile"), RECOMPUTE_ATTENTION (true:
# candle recomputes attention's probabilities in the backward pass; false keeps them),
# FLASH_ATTENTION (true: candle's tiled attention kernels; false: the composed attention path),
# PRESET (qwen2.5-0.5b; also qwen2.5-1.5b, qwen2.5-3b: configs/models/), ACTIVATION_CHECKPOINTING
# (false; true: candle and PyTorch both recompute each block in the backward pass),
# HEAD_CHUNK_ROWS (2048: candle's LM head and loss a chunk of rows at a time; 0: all at once).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-/tmp/bench-gpu}}
mkdir -p "$OUT"
BATCH=${BATCH:-2} SEQ=${SEQ:-2048} TOPK=${TOPK:-20} STEPS=${STEPS:-10} WARMUP=${WARMUP:-2}
MODES=${MODES:-candle eager compile}
RECOMPUTE_ATTENTION=${RECOMPUTE_ATTENTION:-true}
FLASH_ATTENTION=${FLASH_ATTENTION:-true}
PRESET=${PRESET:-qwen2.5-0.5b}
ACTIVATION_CHECKPOINTING=${ACTIVATION_CHECKPOINTING:-false}
HEAD_CHUNK_ROWS=${HEAD_CHUNK_ROWS:-2048}
MODEL=configs/models/$PRESET.json
if [ -z "${DISTILL:-}" ]; then
  DISTILL=/tmp/distill-cuda
  gunzip -c bin/distill-cuda.gz > "$DISTILL" && chmod +x "$DISTILL"
fi

cat > "$OUT/bench.toml" <<TOML
[train]
model = "$PRESET"
vocab_from_tokenizer = false
batch_size = $BATCH
seq_len = $SEQ
device = "cuda"
dtype = "bf16"
recompute_attention = $RECOMPUTE_ATTENTION
flash_attention = $FLASH_ATTENTION
activation_checkpointing = $ACTIVATION_CHECKPOINTING
head_chunk_rows = $HEAD_CHUNK_ROWS

[train.loss]
kd = 1.0
ce = 1.0
capture_temperature = 1.0

[train.optimizer]
lr = 1e-4
warmup_steps = 0
TOML

# Runs "$@" with stdout to $1's file, polling nvidia-smi for the peak memory in use.
measure() {
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/$name.mem" &
  local poll=$!
  "$@" > "$OUT/$name.json" 2> "$OUT/$name.log" || { kill $poll; echo "$name failed:"; tail -20 "$OUT/$name.log"; return 1; }
  kill $poll; wait $poll 2>/dev/null || true
  local peak; peak=$(sort -n "$OUT/$name.mem" | tail -1)
  python3 - "$OUT/$name.json" "$peak" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["peak_gpu_mib"] = int(sys.argv[2]); json.dump(r, open(sys.argv[1], "w"), indent=1)
PY
  echo "$name: $(python3 -c "import json;r=json.load(open('$OUT/$name.json'));print(f\"{r['tokens_per_sec']:.0f} tokens/s, peak {r['peak_gpu_mib']} MiB\")")"
}

runs=()
for m in $MODES; do
  case $m in
    candle) measure candle "$DISTILL" --config "$OUT/bench.toml" --work-dir "$OUT/work" train --bench "$STEPS" --bench-warmup "$WARMUP" --bench-topk "$TOPK" ;;
    eager|compile) measure "torch-$m" python3 benches/gpu/torch_kd.py --model-config $MODEL --batch "$BATCH" --seq "$SEQ" --topk "$TOPK" --steps "$STEPS" --warmup "$WARMUP" --mode "$m" $( [ "$ACTIVATION_CHECKPOINTING" = true ] && echo --activation-checkpointing ) ;;
  esac && runs+=("$OUT/$( [ $m = candle ] && echo candle || echo torch-$m ).json")
done
python3 benches/gpu/report.py $MODEL "${runs[@]}" | tee "$OUT/report.md"
