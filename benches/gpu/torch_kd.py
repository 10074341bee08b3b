"""The PyTorch reference for `distill train --bench`: the same student (transformers'
Qwen2ForCausalLM built from the same config.json, random init), the same batch, the same loss
(forward KL on the teacher's top-k + tail bucket, plus CE on the sampled tokens, fp32 math),
AdamW with the same decay groups, global-norm clipping, bf16 autocast over fp32 master
weights. Eager, or the forward + loss under torch.compile.

Usage: python torch_kd.py --model-config CONFIG.json --batch 2 --seq 2048 --topk 20 \
           --steps 10 --warmup 2 --mode eager|compile [--kd 1 --ce 1] > report.json
"""
import argparse
import json
import math
import statistics
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, LlamaConfig, LlamaForCausalLM

EPS = 1e-10


def synthetic_batch(batch, seq, k, vocab, gen):
    """Shapes and statistics of `distill train --bench`'s data: a seq/16 prompt, then
    completion tokens with k distinct teacher ids and a random distribution over k + 1
    categories (tail logit fixed at 2); the sampled token is the first listed id."""
    prompt = max(1, min(seq // 16, seq - 1))
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    n = seq - prompt
    # k distinct ids per position: k draws without replacement via argsort of random keys is
    # too big over the vocabulary, so draw with offsets (distinct by construction).
    base = torch.randint(0, vocab, (batch, n, 1), generator=gen)
    step = torch.randint(1, vocab // k, (batch, n, 1), generator=gen)
    top_ids = (base + step * torch.arange(k).view(1, 1, k)) % vocab
    logits = torch.cat([torch.rand(batch, n, k, generator=gen) * 8 - 4, torch.full((batch, n, 1), 2.0)], -1)
    top_lps = torch.log_softmax(logits.double(), -1)[..., :k].float()
    ids[:, prompt:] = top_ids[..., 0]
    full_ids = torch.zeros(batch, seq, k, dtype=torch.long)
    full_lps = torch.zeros(batch, seq, k)
    full_ids[:, prompt:] = top_ids
    full_lps[:, prompt:] = top_lps
    mask = torch.zeros(batch, seq)
    mask[:, prompt:] = 1.0
    # Targets at t pair with logits at t - 1.
    return {
        "ids": ids,
        "topk_ids": full_ids[:, 1:],
        "topk_lps": full_lps[:, 1:],
        "sampled": ids[:, 1:],
        "mask": mask[:, 1:],
    }


def teacher_log_probs(topk_lps):
    lp = topk_lps.double()
    tail = torch.log(torch.clamp(1 - lp.exp().sum(-1, keepdim=True), min=EPS))
    all_ = torch.cat([lp, tail], -1)
    return (all_ - torch.logsumexp(all_, -1, keepdim=True)).float()


def kd_ce_loss(logits, b, logp, kd_w, ce_w):
    z = logits[:, :-1].float()  # (B, T-1, V)
    lse = torch.logsumexp(z, -1, keepdim=True)
    lq = torch.gather(z, -1, b["topk_ids"]) - lse  # (B, T-1, K)
    tail = torch.log(torch.clamp(1 - lq.double().exp().sum(-1, keepdim=True), min=EPS)).float()
    logq = torch.cat([lq, tail], -1)
    fkl = (logp.exp() * (logp - logq)).sum(-1)
    n = b["mask"].sum().clamp(min=1)
    kd = (fkl * b["mask"]).sum() / n
    ce = ((lse.squeeze(-1) - torch.gather(z, -1, b["sampled"].unsqueeze(-1)).squeeze(-1)) * b["mask"]).sum() / n
    return kd_w * kd + ce_w * ce


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-config", required=True)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--topk", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--kd", type=float, default=1.0)
    ap.add_argument("--ce", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--activation-checkpointing", action="store_true",
                    help="recompute each decoder layer in the backward pass (transformers' gradient checkpointing)")
    a = ap.parse_args()

    cfg_json = json.load(open(a.model_config))
    torch.manual_seed(0)
    dev = torch.device("cuda")
    if cfg_json["model_type"] == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**cfg_json, attn_implementation="sdpa"))
    else:
        model = LlamaForCausalLM(LlamaConfig(**cfg_json, attn_implementation="sdpa"))
    model = model.to(dev, dtype=torch.float32).train()
    if a.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    gen = torch.Generator().manual_seed(0)
    batches = [{k: v.to(dev) for k, v in synthetic_batch(a.batch, a.seq, a.topk, cfg_json["vocab_size"], gen).items()} for _ in range(4)]
    for b in batches:
        b["logp"] = teacher_log_probs(b["topk_lps"])

    def fwd_loss(ids, topk_ids, sampled, mask, logp):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        return kd_ce_loss(logits, {"topk_ids": topk_ids, "sampled": sampled, "mask": mask}, logp, a.kd, a.ce)

    step_fn = torch.compile(fwd_loss) if a.mode == "compile" else fwd_loss
    torch.cuda.reset_peak_memory_stats()
    step_secs, losses = [], []
    tokens = a.batch * a.seq
    for step in range(a.warmup + a.steps):
        b = batches[step % len(batches)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step_fn(b["ids"], b["topk_ids"], b["sampled"], b["mask"], b["logp"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        if step >= a.warmup:
            step_secs.append(secs)
        print(f"step {step} loss {losses[-1]:.4f} {secs:.3f}s", file=__import__("sys").stderr)
    json.dump({
        "implementation": f"PyTorch {torch.__version__} {a.mode} (transformers, sdpa)",
        "device": torch.cuda.get_device_name(),
        "dtype": "bf16 autocast",
        "params": params,
        "batch_size": a.batch,
        "seq_len": a.seq,
        "topk": a.topk,
        "warmup_steps": a.warmup,
        "step_secs": step_secs,
        "tokens_per_step": tokens,
        "tokens_per_sec": tokens / statistics.median(step_secs),
        "losses": losses,
        "torch_max_memory_allocated": torch.cuda.max_memory_allocated(),
    }, __import__("sys").stdout, indent=1)


if __name__ == "__main__":
    main()
