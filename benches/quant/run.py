"""Quantized inference (issue #21): f32 vs int8 (Q8_0) vs int4 (Q4_K) weights, in one run.

Speed and memory: `distill serve --quantize Q` over GPT-2 124M's shape (random weights, the model
folder benches/serve/run.py writes), one server at a time, 64-token greedy completions from 1
client (sequential) and from 8 clients at once; completion tokens per second of wall time, the
server's peak RSS (VmHWM, which includes the f32 weights read before quantizing) and its RSS
after the load (VmRSS, what it holds while serving).

Quality, on the offline default's trained student (datasets/default, `make distill` first):
held-out NLL (nats/token over the validation shard rows' completion positions, the trainer's own
evaluation; also over the train rows, a larger sample) per quantization
(`cargo run --example quant_nll`), and pass@1 of `distill eval` with `[eval] quantize` (each in
a copy of the work dir, so the real eval/ is untouched; `--no-pass1` skips it).

    .venv/bin/python benches/quant/run.py [--distill target/debug/distill] [--json out.json]
"""

import argparse
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("serve_bench", os.path.join(ROOT, "benches/serve/run.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)

QUANTS = ["f32", "q8_0", "q4_k"]


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def serve_figures(distill, model_dir, q, tokens, clients):
    port = 18441 + QUANTS.index(q)
    args = [distill, "serve", "--model-dir", model_dir, "--port", str(port), "--model-name", "gpt2", "--max-batch-size", str(clients)]
    if q != "f32":
        args += ["--quantize", q]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sb.wait_ready(port, proc, f"distill serve ({q})")
        rss_loaded = status_kb(proc.pid, "VmRSS")
        sb.post(http.client.HTTPConnection("127.0.0.1", port), sb.PROMPTS[0], tokens)  # warm-up
        _, toks1, wall1 = sb.load(port, 1, 3, tokens)
        _, toksn, walln = sb.load(port, clients, 1, tokens)
        return {
            "tok_s_1": sum(toks1) / wall1,
            f"tok_s_{clients}": sum(toksn) / walln,
            "rss_loaded_mb": rss_loaded / 1024,
            "peak_rss_mb": status_kb(proc.pid, "VmHWM") / 1024,
        }
    finally:
        proc.terminate()
        proc.wait()


def nll_figures(work):
    out = subprocess.run(
        [os.environ.get("CARGO", "cargo"), "run", "-q", "-p", "distill-train", "--example", "quant_nll", "--", f"{work}/train", f"{work}/shards"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {j["quantize"]: j for j in map(json.loads, out.splitlines())}


def pass1(distill, work, q, scratch):
    """pass@1 per benchmark of `distill eval` with [eval] quantize = q, in a copy of the work dir."""
    w = os.path.join(scratch, f"work-{q}")
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    shutil.copytree(f"{work}/train", f"{w}/train")
    text = open(os.path.join(ROOT, "configs/default.toml")).read()
    text = text.replace("[eval]\n", f'[eval]\nquantize = "{"" if q == "f32" else q}"\n', 1)
    cfg = os.path.join(scratch, f"config-{q}.toml")
    open(cfg, "w").write(text)
    t = time.time()
    subprocess.run([distill, "--config", cfg, "--work-dir", w, "--only", "--quiet", "eval"], cwd=ROOT, check=True)
    summary = json.load(open(f"{w}/eval/stats.json"))
    return summary, time.time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distill", default=os.path.join(ROOT, "target/debug/distill"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "target/bench-serve/gpt2-124m"))
    ap.add_argument("--work", default=os.path.join(ROOT, "datasets/default"), help="a finished run's work dir (train/ and shards/)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-pass1", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    sb.ensure_model(a.model_dir)
    res = {"serve": {}, "nll": {}, "pass1": {}}
    for q in QUANTS:
        res["serve"][q] = serve_figures(a.distill, a.model_dir, q, a.tokens, a.clients)
        print(f"serve {q}: {res['serve'][q]}", flush=True)
    have_run = os.path.exists(f"{a.work}/train/model.safetensors") and os.path.isdir(f"{a.work}/shards")
    if have_run:
        res["nll"] = nll_figures(a.work)
        if not a.no_pass1:
            scratch = os.path.join(ROOT, "target/bench-quant")
            for q in QUANTS:
                res["pass1"][q] = pass1(a.distill, a.work, q, scratch)[0]
    else:
        print(f"no finished run at {a.work} (make distill): quality figures skipped", file=sys.stderr)

    s = res["serve"]
    print(f"\nGPT-2 124M shape, {a.tokens}-token greedy completions, distill serve on this CPU")
    print(f"{'':34} " + " ".join(f"{q:>10}" for q in QUANTS))
    for key, label in [("tok_s_1", "tokens/s, 1 client"), (f"tok_s_{a.clients}", f"tokens/s, {a.clients} clients"), ("rss_loaded_mb", "RSS after load (MB)"), ("peak_rss_mb", "peak RSS (MB)")]:
        print(f"{label:34} " + " ".join(f"{s[q][key]:10.1f}" for q in QUANTS))
    if res["nll"]:
        n = res["nll"]
        print(f"\nOffline default's student ({a.work}), weights quantized on load")
        print(f"{'held-out NLL (nats/token)':34} " + " ".join(f"{n[q]['nll']:10.4f}" for q in QUANTS))
        print(f"{'  delta vs f32':34} " + " ".join(f"{n[q]['nll'] - n['f32']['nll']:+10.4f}" for q in QUANTS))
        print(f"{'train-rows NLL (nats/token)':34} " + " ".join(f"{n[q]['nll_train_rows']:10.4f}" for q in QUANTS))
        print(f"{'  delta vs f32':34} " + " ".join(f"{n[q]['nll_train_rows'] - n['f32']['nll_train_rows']:+10.4f}" for q in QUANTS))
        print(f"{'tokens (validation / train)':34} {n['f32']['tokens']:.0f} / {n['f32']['train_tokens']:.0f}")
    if res["pass1"]:
        benches = [b for b in res["pass1"]["f32"] if isinstance(res["pass1"]["f32"][b], dict) and "figures" in res["pass1"]["f32"][b]]
        for b in benches:
            cells = " ".join(f"{res['pass1'][q][b]['figures']['pass@1']:10.3f}" for q in QUANTS)
            print(f"{'pass@1 ' + b:34} {cells}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
