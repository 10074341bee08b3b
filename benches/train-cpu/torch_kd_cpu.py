"""The PyTorch reference for benches/train-cpu/run.py: `distill train --bench`'s job on the CPU.

The same student (transformers' GPT2LMHeadModel from configs/models/<preset>.json, random init,
dropout on as in training), the same synthetic batches and the same loss (forward KL on the
teacher's top-k + tail bucket, plus CE on the sampled tokens, f32) as benches/gpu/torch_kd.py,
whose data and loss functions this imports rather than copies; f32 on the CPU with gradient
accumulation, global-norm clipping and AdamW with distill's decay groups (no decay on biases,
layer norms and the wte/wpe embeddings).

    python torch_kd_cpu.py --model-config configs/models/gpt2-124m.json --batch 2 --seq 512 \
        --grad-accum 4 --topk 20 --steps 2 --warmup 1 [--threads 2] [--activation-checkpointing] > report.json
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu"))
from torch_kd import kd_ce_loss, synthetic_batch, teacher_log_probs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-config", required=True)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--topk", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--activation-checkpointing", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.model_config))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**cfg)).float().train()
    if a.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = sum(p.numel() for p in model.parameters())
    no_decay = lambda n, p: p.ndim < 2 or ".wte." in n or ".wpe." in n or n.endswith(".bias")  # noqa: E731
    decay = [p for n, p in model.named_parameters() if not no_decay(n, p)]
    rest = [p for n, p in model.named_parameters() if no_decay(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(a.batch, a.seq, a.topk, cfg["vocab_size"], gen) for _ in range(4)]
    for b in batches:
        b["logp"] = teacher_log_probs(b["topk_lps"])

    step_secs, losses = [], []
    tokens = a.batch * a.seq * a.grad_accum
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        total = 0.0
        for micro in range(a.grad_accum):
            b = batches[(step * a.grad_accum + micro) % len(batches)]
            logits = model(input_ids=b["ids"]).logits
            loss = kd_ce_loss(logits, b, b["logp"], 1.0, 1.0) / a.grad_accum
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        secs = time.perf_counter() - t0
        losses.append(total)
        if step >= a.warmup:
            step_secs.append(secs)
        print(f"step {step} loss {total:.4f} {secs:.1f}s", file=sys.stderr, flush=True)
    json.dump({
        "implementation": f"PyTorch {torch.__version__} eager CPU ({a.threads} threads)",
        "params": params,
        "batch_size": a.batch,
        "grad_accum": a.grad_accum,
        "seq_len": a.seq,
        "topk": a.topk,
        "step_secs": step_secs,
        "tokens_per_step": tokens,
        "tokens_per_sec": tokens / statistics.median(step_secs),
        "losses": losses,
    }, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
