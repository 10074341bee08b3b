"""CPU training speed and memory: `distill train --bench` beside PyTorch in one run.

GPT-2 124M (configs/models/gpt2-124m.json, random init), batch 2 x 512 tokens, gradient
accumulation 4, top-20 KD + CE, f32, AdamW with clipping, on this machine's CPU; each side with
and without activation checkpointing. distill runs as `make build` builds it; the reference is
torch_kd_cpu.py (transformers, eager, the thread count of --threads). Peak RSS is the OS's
(ru_maxrss from wait4 of each process), tokens/s is at the median timed step. Rounds alternate
which side goes first, since the 2-core machine is shared and its speed drifts.

    .venv/bin/python benches/train-cpu/run.py [--rounds 1] [--steps 3] [--modes distill,torch,distill-ac,torch-ac]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = """[train]
model = "{preset}"
vocab_from_tokenizer = false
batch_size = {batch}
seq_len = {seq}
grad_accum = {accum}
device = "cpu"
dtype = "f32"
activation_checkpointing = {ac}

[train.loss]
kd = 1.0
ce = 1.0
capture_temperature = 1.0

[train.optimizer]
lr = 1e-4
warmup_steps = 0
"""


def run(cmd, env=None):
    """Runs cmd; returns (its stdout parsed as JSON, peak RSS in GB from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        out.seek(0)
        err.seek(0)
        if status != 0:
            sys.exit(f"{cmd[0]} failed ({status}):\n{err.read().decode()[-3000:]}")
        return json.loads(out.read()), usage.ru_maxrss / 1024**2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distill", default=os.path.join(ROOT, "target/debug/distill"))
    ap.add_argument("--preset", default="gpt2-124m")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--topk", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (the first after warmup is often slower)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--modes", default="distill,torch,distill-ac,torch-ac")
    ap.add_argument("--json", help="also write every run's report here")
    a = ap.parse_args()
    modes = a.modes.split(",")
    work = tempfile.mkdtemp(prefix="bench-train-cpu-")
    results = {m: [] for m in modes}
    load_before = os.getloadavg()[0]
    for r in range(a.rounds):
        for m in (modes if r % 2 == 0 else modes[::-1]):
            ac = m.endswith("-ac")
            if m.startswith("distill"):
                cfg = os.path.join(work, f"{m}.toml")
                with open(cfg, "w") as f:
                    f.write(CONFIG.format(preset=a.preset, batch=a.batch, seq=a.seq, accum=a.grad_accum, ac=str(ac).lower()))
                cmd = [a.distill, "--quiet", "--config", cfg, "--work-dir", os.path.join(work, "w"), "train",
                       "--bench", str(a.steps), "--bench-warmup", str(a.warmup), "--bench-topk", str(a.topk)]
                env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
            else:
                cmd = [sys.executable, os.path.join(HERE, "torch_kd_cpu.py"), "--model-config", f"configs/models/{a.preset}.json",
                       "--batch", str(a.batch), "--seq", str(a.seq), "--grad-accum", str(a.grad_accum), "--topk", str(a.topk),
                       "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)] + (["--activation-checkpointing"] if ac else [])
                env = None
            report, rss = run(cmd, env)
            report["peak_rss_gb"] = rss
            results[m].append(report)
            print(f"round {r + 1}: {m:>10}: {report['tokens_per_sec']:6.1f} tokens/s, step {statistics.median(report['step_secs']):6.1f} s, peak RSS {rss:5.2f} GB", flush=True)

    print(f"\n{a.preset}, {a.batch} x {a.seq} tokens x grad_accum {a.grad_accum}, top-{a.topk} KD + CE, f32, CPU, {a.threads} threads; "
          f"{a.rounds} round(s) of {a.warmup} warmup + {a.steps} timed step(s), alternating order; median over rounds; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    med = {m: (statistics.median(x["tokens_per_sec"] for x in results[m]), max(x["peak_rss_gb"] for x in results[m])) for m in modes}
    print(f"{'':34} {'tokens/s':>9} {'peak RSS GB':>12} {'tok/s vs torch':>15} {'RSS vs torch':>13}")
    for m in modes:
        ref = ("torch-ac" if m.endswith("-ac") else "torch")
        tps, rss = med[m]
        ratio = f"{tps / med[ref][0]:15.2f} {rss / med[ref][1]:13.2f}" if ref in med and m.startswith("distill") else ""
        name = ("distill" if m.startswith("distill") else "PyTorch") + (" + activation ckpt" if m.endswith("-ac") else "")
        print(f"{name:34} {tps:9.1f} {rss:12.2f} {ratio}")
    for m in modes:
        if m.startswith("distill"):
            phases = results[m][-1]["phase_secs"]
            total = sum(phases.values())
            print(f"{m} phases of one step (s): " + ", ".join(f"{k} {v:.2f} ({v / total:.0%})" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
