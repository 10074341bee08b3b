#!/usr/bin/env bash
# Where a candle training step's time goes: `train --bench` phase times (forward, loss,
# backward, clip, AdamW; each ended by a device sync) for the Qwen2.5-0.5B shape and for
# variants that isolate one cost: a small vocabulary (LM head + loss), short sequences at the
# same tokens per step (attention's T^2), one layer (per-layer vs fixed cost).
#   DISTILL=/path/to/cuda/distill bash benches/gpu/breakdown.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
variant() { # name, python edits of the config dict, batch, seq
  python3 -c "import json; c=json.load(open('configs/models/qwen2.5-0.5b.json')); $2; json.dump(c, open('$tmp/$1.json','w'))"
  printf '[train]\nmodel = "%s"\nvocab_from_tokenizer = false\nbatch_size = %s\nseq_len = %s\ndevice = "cuda"\ndtype = "bf16"\n[train.loss]\nkd = 1.0\nce = 1.0\ncapture_temperature = 1.0\n' "$tmp/$1.json" "$3" "$4" > "$tmp/$1.toml"
  "$DISTILL" -q --config "$tmp/$1.toml" --work-dir "$tmp/w" train --bench 3 --bench-warmup 1 | python3 -c "
import json, sys
r = json.load(sys.stdin)
ph = ' '.join(f'{k}={v*1000:.0f}' for k, v in r['phase_secs'].items())
print(f\"$1 (batch $3 x $4): step {sorted(r['step_secs'])[len(r['step_secs'])//2]*1000:.0f} ms, {r['tokens_per_sec']:.0f} tok/s; phases ms: {ph}\")"
}
variant base "pass" 2 2048
variant vocab8k "c['vocab_size']=8192" 2 2048
variant seq512 "pass" 8 512
variant layers1 "c['num_hidden_layers']=1" 2 2048
variant layers1_vocab8k "c['num_hidden_layers']=1; c['vocab_size']=8192" 2 2048
