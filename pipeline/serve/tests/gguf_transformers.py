"""Runs GGUF files written by `distill gguf` in a third-party runtime: transformers, which loads
the model and the tokenizer from the GGUF file alone (its own GGUF reader de-permutes Llama's
q/k rows, dequantizes Q8_0 to f32 and builds a fast tokenizer from `tokenizer.ggml.*`).

    python gguf_transformers.py JOB.json   -> prints one JSON result on stdout

JOB: {"max_new": N, "cases": [{"gguf": PATH, "prompts": [TEXT, ...], "forced": [[ID, ...], ...]}]}
Per case the result holds, per prompt, the ids the GGUF tokenizer encodes it to (with the file's
own BOS setting), N greedy tokens (argmax, stopping before the file's end-of-text id, as distill
does), each token decoded alone, and the gap between the best and second-best logit at each step;
per `forced` sequence, the logits and their argmax at every position (teacher-forced).
"""

import json
import os
import sys

import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer


def greedy(model, ids, max_new, eos):
    out, gaps = [], []
    seq = list(ids)
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([seq])).logits[0, -1]  # (V,)
            top = torch.topk(logits, 2)
            tok = int(top.indices[0])
            gaps.append(float(top.values[0] - top.values[1]))
            if tok in eos:
                break
            out.append(tok)
            seq.append(tok)
    return out, gaps


def main():
    job = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    results = []
    for case in job["cases"]:
        folder, name = os.path.split(case["gguf"])
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        extra = {}
        meta = GGUFReader(case["gguf"]).fields
        if "gpt2.context_length" in meta:
            # transformers maps gpt2.context_length to GPT2Config.n_ctx, which GPT-2 does not read
            # (it sizes the position table from n_positions, default 1024): a limitation of its
            # GGUF loader that GPT-2 itself (1024 positions) never meets. Pass the file's value.
            f = meta["gpt2.context_length"]
            extra["n_positions"] = int(f.parts[f.data[0]][0])
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, **extra).eval()
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        r = {"architecture": model.config.model_type, "eos": sorted(eos), "prompts": [], "forced": []}
        for prompt in case["prompts"]:
            ids = tok(prompt)["input_ids"]
            gen, gaps = greedy(model, ids, job["max_new"], eos)
            r["prompts"].append({"ids": ids, "tokens": gen, "pieces": [tok.decode([t]) for t in gen], "gaps": gaps})
        with torch.no_grad():
            for seq in case["forced"]:
                logits = model(torch.tensor([seq])).logits[0]  # (T, V)
                r["forced"].append({"argmax": logits.argmax(-1).tolist(), "logits": logits.tolist()})
        results.append(r)
    print(json.dumps({"ok": True, "cases": results}))


main()
