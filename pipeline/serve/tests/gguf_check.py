"""Reads a GGUF file written by `distill_model::gguf::export` with the `gguf` package (llama.cpp's
own Python reader) and checks it against the HF folder it came from, independently of the Rust
code: llama.cpp's tensor names and layouts (GPT-2 Conv1D transposed; Llama q/k permuted as
llama.cpp's convert_hf_to_gguf.py permutes them; Qwen2 as is), every tensor's values within the
error bound of its block format, and the architecture and tokenizer metadata.

    python gguf_check.py MODEL.gguf HF_DIR   -> prints one JSON summary, exits 1 on a mismatch
"""

import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import load_file


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        fail(f"metadata key {key} missing")
    if len(f.types) and f.types[0] == 8:  # string
        return bytes(f.parts[f.data[0]]).decode()
    if f.types and f.types[0] == 9:  # array
        if f.types[1] == 8:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def permute(w, n_head):  # convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def bound(qtype, amax):
    """Largest |error| a block of largest magnitude amax may have (see distill_model::quant)."""
    f16 = 1 + 2**-10
    if qtype == T.F32:
        return np.zeros_like(amax)
    if qtype == T.Q8_0:
        return amax / 127 * 0.5 * f16 + amax * 2**-11
    if qtype == T.Q4_0:
        return amax / 8 * f16 + amax * 2**-11
    if qtype == T.Q4_K:
        return 2 * amax / 15 * 2 * f16
    fail(f"unexpected type {qtype.name}")


def expected(cfg, hf):
    """llama.cpp name -> HF values in GGUF row layout, written from llama.cpp's converter."""
    out = {}
    if cfg["model_type"] == "gpt2":
        p = "transformer."
        out["token_embd.weight"] = hf[p + "wte.weight"]
        out["position_embd.weight"] = hf[p + "wpe.weight"]
        for i in range(cfg["n_layer"]):
            h = f"{p}h.{i}."
            for ours, theirs in [("attn_norm", "ln_1"), ("ffn_norm", "ln_2")]:
                out[f"blk.{i}.{ours}.weight"] = hf[h + theirs + ".weight"]
                out[f"blk.{i}.{ours}.bias"] = hf[h + theirs + ".bias"]
            for ours, theirs in [("attn_qkv", "attn.c_attn"), ("attn_output", "attn.c_proj"), ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")]:
                out[f"blk.{i}.{ours}.weight"] = hf[h + theirs + ".weight"].T
                out[f"blk.{i}.{ours}.bias"] = hf[h + theirs + ".bias"]
        out["output_norm.weight"] = hf[p + "ln_f.weight"]
        out["output_norm.bias"] = hf[p + "ln_f.bias"]
        return out
    qwen = cfg["model_type"] == "qwen2"
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    out["token_embd.weight"] = hf["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        m = f"model.layers.{i}."
        out[f"blk.{i}.attn_norm.weight"] = hf[m + "input_layernorm.weight"]
        out[f"blk.{i}.ffn_norm.weight"] = hf[m + "post_attention_layernorm.weight"]
        for ours, theirs, n in [("attn_q", "q_proj", heads), ("attn_k", "k_proj", kv), ("attn_v", "v_proj", None), ("attn_output", "o_proj", None)]:
            for kind in ["weight", "bias"]:
                key = f"{m}self_attn.{theirs}.{kind}"
                if key in hf:
                    v = hf[key]
                    out[f"blk.{i}.{ours}.{kind}"] = permute(v, n) if (n and not qwen) else v
        for ours, theirs in [("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")]:
            out[f"blk.{i}.{ours}.weight"] = hf[f"{m}mlp.{theirs}.weight"]
    out["output_norm.weight"] = hf["model.norm.weight"]
    if not cfg.get("tie_word_embeddings", False):
        out["output.weight"] = hf["lm_head.weight"]
    return out


def main():
    path, hf_dir = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{hf_dir}/config.json"))
    tok = json.load(open(f"{hf_dir}/tokenizer.json"))
    hf = load_file(f"{hf_dir}/model.safetensors")
    want = expected(cfg, hf)
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    if arch != {"gpt2": "gpt2", "llama": "llama", "qwen2": "qwen2"}[cfg["model_type"]]:
        fail(f"architecture {arch} for model_type {cfg['model_type']}")
    n_layer = cfg.get("n_layer", cfg.get("num_hidden_layers"))
    if field(r, f"{arch}.block_count") != n_layer:
        fail("block_count")
    if field(r, f"{arch}.embedding_length") != cfg.get("n_embd", cfg.get("hidden_size")):
        fail("embedding_length")
    tokens = field(r, "tokenizer.ggml.tokens")
    if len(tokens) != cfg["vocab_size"]:
        fail(f"{len(tokens)} tokens, model vocab {cfg['vocab_size']}")
    for t, i in tok["model"]["vocab"].items():
        if tokens[i] != t:
            fail(f"token {i}: {tokens[i]!r} != {t!r}")
    types = field(r, "tokenizer.ggml.token_type")
    for a in tok["added_tokens"]:
        if tokens[a["id"]] != a["content"] or types[a["id"]] != (3 if a["special"] else 4):
            fail(f"added token {a}")
    merges = field(r, "tokenizer.ggml.merges")
    ref = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    if merges != ref:
        fail("merges differ")
    if field(r, "tokenizer.ggml.model") != "gpt2" or field(r, "tokenizer.ggml.pre") != "gpt-2":
        fail("tokenizer model/pre")

    seen, worst, counts = set(), 0.0, {}
    for t in r.tensors:
        name = t.name
        if name not in want:
            fail(f"unexpected tensor {name}")
        seen.add(name)
        ref = want[name].astype(np.float32)
        got = dequantize(t.data, t.tensor_type).reshape(ref.shape)  # ggml ne reversed = numpy shape
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        block = 256 if t.tensor_type == T.Q4_K else 32 if t.tensor_type != T.F32 else ref.shape[-1] if ref.ndim else 1
        rb = ref.reshape(-1, block)
        err = np.abs(got.reshape(-1, block) - rb)
        lim = bound(t.tensor_type, np.abs(rb).max(axis=1, keepdims=True))
        over = err > lim + 1e-12
        if over.any():
            j = np.argwhere(over)[0]
            fail(f"{name} ({t.tensor_type.name}): error {err[tuple(j)]} above the bound {lim[j[0], 0]}")
        if t.tensor_type != T.F32 and float(err.max()) == 0.0:
            fail(f"{name}: a quantized tensor without rounding error is suspicious")
        worst = max(worst, float((err / np.maximum(np.abs(rb).max(axis=1, keepdims=True), 1e-30)).max()))
    missing = set(want) - seen
    if missing:
        fail(f"tensors missing: {sorted(missing)[:5]}")
    print(json.dumps({"ok": True, "architecture": arch, "tensors": len(seen), "types": counts, "worst_error_over_block_max": worst, "tokens": len(tokens), "merges": len(merges)}))


main()
