"""Cross-tokenizer distillation, end to end and offline (issue #16): `make bench-xtok`.

The offline teacher is trained with a byte-level BPE of its own (`[teacher_bootstrap]
tokenizer_vocab_size`: 6,144 entries learned on every other file of the corpus, against the
student's 4,096 learned on all of it),
served by `distill serve` with top-8 log-probs, and the usual stages run: prompts -> teacher ->
filter -> shards -> train. It reports

- the share of completion bytes with soft labels: before issue #16 (a row kept its soft labels
  only when every boundary matched: the rows aligned `exact` / `exact_teacher_tokens`), with 1:1
  chunks only (`max_chunk_tokens = 1`), and with chunk events (the default, 8);
- held-out teacher NLL in bits per byte (the student's cross-entropy on the teacher's validation
  answers, summed over their tokens, over their UTF-8 bytes, / ln 2) of the KD run (`[train]`
  defaults: forward KL + 0.1 CE) against the CE-only run at the same steps, for 3 seeds.

Shards keep rows of at most `seq_len` tokens, so no validation answer is truncated and the byte
count is exactly what the loss covered. Results go to `<work>/results.json`.

    make bench-xtok                      # work dir /tmp/distill-bench-xtok
    XTOK_WORK=/path make bench-xtok
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("XTOK_WORK", "/tmp/distill-bench-xtok"))
DISTILL = Path(os.environ.get("XTOK_DISTILL", ROOT / "target" / "debug" / "distill"))
SEEDS = [1, 2, 3]
SEQ_LEN = 256

CONFIG = """
name = "xtok"
work_dir = "{work}/run"

[tokenizer]
vocab_size = 4096
max_corpus_bytes = 3000000

[teacher_bootstrap]
max_corpus_bytes = 3000000
tokenizer_vocab_size = 6144

[teacher_bootstrap.train]
model = "offline-teacher"
steps = 150
batch_size = 8
seq_len = 256
eval_every = 50
checkpoint_every = 50

[teacher_bootstrap.train.optimizer]
lr = 0.002
warmup_steps = 10

[prompts.template]
per_template = 12

[teacher]
base_url = "local"
n = 2
temperature = 0.8
max_tokens = 96
top_logprobs = 8
stop = ["\\ndef ", "\\nclass ", "\\n\\n\\n"]
max_concurrency = 8
cache_dir = "{work}/teacher-cache"

[filter]
allowed_finish_reasons = ["stop", "length"]

[shards]
validation_fraction = 0.25
max_seq_len = {seq_len}
max_chunk_tokens = {max_chunk_tokens}

[train]
model = "nano"
steps = 100
batch_size = 8
seq_len = {seq_len}
eval_every = 50
seed = {seed}

[train.loss]
kd = {kd}
ce = {ce}

[train_baseline]
enabled = false
"""


def config(seed=1, kd=1.0, ce=0.1, max_chunk_tokens=8):
    path = WORK / f"config-{seed}-{kd}-{max_chunk_tokens}.toml"
    path.write_text(CONFIG.format(work=WORK, seed=seed, kd=kd, ce=ce, max_chunk_tokens=max_chunk_tokens, seq_len=SEQ_LEN))
    return path


def distill(cfg, *args):
    cmd = [str(DISTILL), "--quiet", "--config", str(cfg), *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=WORK)


def stats(stage):
    return json.loads((WORK / "run" / stage / "stats.json").read_text())


def shard_rows():
    """Split, completion text and alignment of every shard row, read back with pyarrow."""
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((WORK / "run" / "shards").glob("*.parquet")):
        rows.extend(pq.read_table(path, columns=["split", "completion_text", "alignment"]).to_pylist())
    return rows


def final_eval():
    lines = [json.loads(l) for l in (WORK / "run" / "train" / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [l for l in lines if l.get("kind") == "eval"][-1]


def main():
    if not DISTILL.exists():
        sys.exit(f"{DISTILL} is missing: run `cargo build --bin distill` (make bench-xtok does)")
    shutil.rmtree(WORK / "run", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    base = config()
    distill(base, "shards")
    rows = shard_rows()
    total = sum(len(r["completion_text"].encode()) for r in rows)
    row_level = sum(len(r["completion_text"].encode()) for r in rows if r["alignment"] in ("exact", "exact_teacher_tokens"))
    chunk_events = stats("shards")
    val_bytes = sum(len(r["completion_text"].encode()) for r in rows if r["split"] == "validation")
    results = {
        "rows": chunk_events["total_rows"],
        "alignment": chunk_events["alignment"],
        "soft_label_byte_share": {"before_issue_16_row_level": row_level / total, "chunk_events": chunk_events["soft_label_byte_share"]},
        "teacher_mass_captured": chunk_events["teacher_mass_captured"],
        "validation_rows": sum(r["split"] == "validation" for r in rows),
        "validation_bytes": val_bytes,
        "runs": [],
    }
    for seed in SEEDS:
        for name, kd, ce in [("kd", 1.0, 0.1), ("ce", 0.0, 1.0)]:
            distill(config(seed=seed, kd=kd, ce=ce), "train")
            e = final_eval()
            bpb = e["val_ce"] * e["ce_tokens"] / math.log(2) / val_bytes
            results["runs"].append({"seed": seed, "loss": name, "step": e["step"], "val_ce_nats_per_token": e["val_ce"], "ce_tokens": e["ce_tokens"], "bits_per_byte": bpb})
            print(f"seed {seed} {name}: {bpb:.4f} bits/byte", flush=True)
    # 1:1 chunks alone (the shards stage before chunk events), on the same answers.
    distill(config(max_chunk_tokens=1), "--force", "shards")
    results["soft_label_byte_share"]["one_to_one_chunks_only"] = stats("shards")["soft_label_byte_share"]
    distill(base, "--force", "shards")

    kd = [r["bits_per_byte"] for r in results["runs"] if r["loss"] == "kd"]
    ce = [r["bits_per_byte"] for r in results["runs"] if r["loss"] == "ce"]
    gains = [c - k for k, c in zip(kd, ce)]
    spread = max(max(kd) - min(kd), max(ce) - min(ce))
    results["summary"] = {"kd_mean": sum(kd) / len(kd), "ce_mean": sum(ce) / len(ce), "gain_per_seed": gains, "seed_spread": spread, "kd_better_by_more_than_spread": min(gains) > spread}
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    s = results["soft_label_byte_share"]
    print()
    print(f"rows {results['rows']}, alignment {results['alignment']}")
    print(f"soft-labelled completion bytes: before #16 {s['before_issue_16_row_level']:.1%}, 1:1 chunks {s['one_to_one_chunks_only']:.1%}, chunk events {s['chunk_events']:.1%}")
    print(f"teacher probability captured at labelled positions: {results['teacher_mass_captured']:.3f}")
    print(f"held-out teacher NLL, bits/byte ({results['validation_rows']} answers, {val_bytes} bytes), 100 steps:")
    print("seed   KD       CE-only  CE - KD")
    for seed, k, c in zip(SEEDS, kd, ce):
        print(f"{seed:<6} {k:.4f}   {c:.4f}   {c - k:+.4f}")
    print(f"mean   {results['summary']['kd_mean']:.4f}   {results['summary']['ce_mean']:.4f}; largest seed spread {spread:.4f}; KD better by more than the spread: {results['summary']['kd_better_by_more_than_spread']}")


if __name__ == "__main__":
    main()
