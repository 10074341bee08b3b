"""Side-by-side table of the GPU training benchmark: tokens/s, MFU, peak GPU memory and the
ratio to PyTorch eager (to torch.compile when eager did not run), from the JSON reports of
run.sh, with the FLOP convention printed under the table.

MFU = tokens/s * FLOPs/token / peak, with FLOPs/token = 6 * N_matmul + 12 * L * H * D * T
(PaLM's accounting: N_matmul counts every matmul weight including the LM head, which is the
tied embedding for Qwen2.5-0.5B; the attention term counts the full T x T scores). Peak bf16
dense: 989.4 TFLOP/s for an H100 SXM, 756 for PCIe, 835 for NVL, 989.4 for an H200.

Usage: python report.py CONFIG.json run1.json [run2.json ...]   (each may carry peak_gpu_mib)
"""
import json
import statistics
import sys


def flops_per_token(cfg, seq):
    c, layers, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = c // heads
    attn = c * heads * d + 2 * c * kv * d + heads * d * c
    mlp = 3 * c * cfg["intermediate_size"]
    n_matmul = layers * (attn + mlp) + v * c
    return 6 * n_matmul + 12 * layers * heads * d * seq


def peak_flops(device):
    name = device.upper()
    if "PCIE" in name:
        return 756e12
    if "NVL" in name:
        return 835e12
    return 989.4e12


def main():
    cfg = json.load(open(sys.argv[1]))
    runs = [json.load(open(p)) for p in sys.argv[2:]]
    # The ratio column is against PyTorch eager when it ran, else torch.compile, else the first run.
    ref = next((r for r in runs if "eager" in r["implementation"]), None) or next((r for r in runs if "compile" in r["implementation"]), runs[0])
    ref_name = "PyTorch eager" if "eager" in ref["implementation"] else "torch.compile" if "compile" in ref["implementation"] else ref["implementation"]
    device = next((r["device"] for r in runs if "H100" in r["device"] or "H200" in r["device"]), runs[0]["device"])
    per_token = flops_per_token(cfg, runs[0]["seq_len"])
    print(f"device: {device}; model {cfg.get('model_type')} {runs[0]['params']:,} params; batch {runs[0]['batch_size']} x seq {runs[0]['seq_len']}, top-{runs[0]['topk']} KD + CE")
    print()
    print(f"| implementation | tokens/s | vs {ref_name} | MFU | median step (s) | peak GPU memory (MiB, nvidia-smi) | first / last loss |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        mfu = r["tokens_per_sec"] * flops_per_token(cfg, r["seq_len"]) / peak_flops(device)
        print(f"| {r['implementation']} | {r['tokens_per_sec']:,.0f} | {r['tokens_per_sec'] / ref['tokens_per_sec']:.2f}x | {100 * mfu:.1f}% "
              f"| {statistics.median(r['step_secs']):.3f} | {r.get('peak_gpu_mib', 'n/a')} | {r['losses'][0]:.3f} / {r['losses'][-1]:.3f} |")
    print()
    print(f"MFU = tokens/s x {per_token / 1e9:.3f} GFLOP/token / {peak_flops(device) / 1e12:.1f} TFLOP/s (bf16 dense peak); FLOP/token = "
          "6 x matmul weights (LM head included) + 12 x layers x heads x head_dim x seq (PaLM's accounting, full T x T scores). "
          "Each implementation initialises its own random weights, so the losses agree only roughly.")


if __name__ == "__main__":
    main()
