"""`distill serve` beside transformers' `generate` on this machine's CPU, same model, same prompts.

The model is GPT-2 124M's shape with random weights (pipeline/serve/examples/model_dir.rs writes
it once under target/bench-serve/; transformers loads the very same config.json and
model.safetensors). Both servers run at the same time, each answering POST /v1/completions:
`distill serve` (the binary `make build` makes) and benches/serve/hf_server.py (transformers'
`model.generate` with static batching, greedy, KV cache). Clients ask for 64-token greedy
completions; one client sends requests one after another, 16 clients send at once.

Each repeat measures both servers at 1 and 16 clients, alternating which goes first, since the
machine is shared and its speed drifts. Printed side by side: p50/p95 latency of a request,
throughput (completion tokens per second of wall time) and each server process's peak RSS
(VmHWM from /proc), with ratios distill / transformers.

    .venv/bin/python benches/serve/run.py [--repeats 2] [--distill target/debug/distill]
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = [
    "def add(a, b):",
    "import os",
    "for i in range(10):",
    "class Stack:",
    "def fib(n):\n    if n < 2:",
    "print(",
    "# compute the mean\ndef mean(xs):",
    "x = [",
    "def parse(line):\n    parts = line.split(',')",
    "with open(path) as f:",
    "class Node:\n    def __init__(self, value):",
    "import sys\n\nif __name__ == '__main__':",
    "def is_prime(n):",
    "result = {}\nfor key, value in items:",
    "try:\n    import numpy as np\nexcept ImportError:",
    "def merge(a, b):\n    out = []",
]


def ensure_model(model_dir):
    if os.path.exists(os.path.join(model_dir, "model.safetensors")):
        return
    print(f"writing the GPT-2 124M-shaped model to {model_dir} (once; a few minutes)", flush=True)
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "run", "-q", "-p", "distill-serve", "--example", "model_dir", "--", model_dir, "gpt2-124m", "1"], cwd=ROOT, check=True)


def post(conn, prompt, tokens):
    body = json.dumps({"model": "gpt2", "prompt": prompt, "max_tokens": tokens, "temperature": 0})
    conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data)["usage"]["completion_tokens"]


def wait_ready(port, proc, name, timeout=600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before it answered")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{name} did not answer within {timeout} s")


def peak_rss_gb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def load(port, clients, per_client, tokens):
    """`clients` threads, each sending `per_client` requests one after another on its own
    keep-alive connection; returns (latencies, completion tokens, wall seconds)."""
    lat, toks, errors = [], [], []
    lock = threading.Lock()

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        for r in range(per_client):
            p = PROMPTS[(c * per_client + r) % len(PROMPTS)]
            t = time.perf_counter()
            try:
                n = post(conn, p, tokens)
            except Exception as e:  # reported after the run
                with lock:
                    errors.append(repr(e))
                return
            with lock:
                lat.append(time.perf_counter() - t)
                toks.append(n)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit(f"requests failed: {errors[:3]}")
    return lat, toks, wall


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distill", default=os.path.join(ROOT, "target/debug/distill"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "target/bench-serve/gpt2-124m"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--sequential", type=int, default=3, help="requests of the 1-client run")
    ap.add_argument("--rounds", type=int, default=1, help="requests per client of the 16-client run")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--distill-args", default="", help="extra flags for distill serve")
    ap.add_argument("--hf-args", default="", help="extra flags for hf_server.py")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    ensure_model(a.model_dir)
    load_before = os.getloadavg()[0]

    servers = {}
    dport, hport = 18431, 18432
    servers["distill"] = (dport, subprocess.Popen([a.distill, "serve", "--model-dir", a.model_dir, "--port", str(dport), "--model-name", "gpt2", *a.distill_args.split()], cwd=ROOT, stdout=subprocess.DEVNULL))
    hf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_server.py")
    servers["transformers"] = (hport, subprocess.Popen([sys.executable, hf, a.model_dir, str(hport), *a.hf_args.split()], cwd=ROOT, stdout=subprocess.DEVNULL))
    try:
        for name, (port, proc) in servers.items():
            wait_ready(port, proc, name)
            post(http.client.HTTPConnection("127.0.0.1", port), PROMPTS[0], a.tokens)  # warm-up
        res = {(s, c): {"lat": [], "tok_s": [], "toks": []} for s in servers for c in (1, a.clients)}
        for rep in range(a.repeats):
            order = list(servers) if rep % 2 == 0 else list(servers)[::-1]
            for clients, per in ((1, a.sequential), (a.clients, a.rounds)):
                for s in order:
                    lat, toks, wall = load(servers[s][0], clients, per, a.tokens)
                    r = res[(s, clients)]
                    r["lat"] += lat
                    r["toks"] += toks
                    r["tok_s"].append(sum(toks) / wall)
                    print(f"repeat {rep + 1}: {s:>12} {clients:>2} client(s): p50 {statistics.median(lat):6.2f} s, {sum(toks) / wall:6.1f} tok/s", flush=True)
        rss = {s: peak_rss_gb(proc.pid) for s, (_, proc) in servers.items()}
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait()

    rows = []
    for clients in (1, a.clients):
        for q, label in ((0.5, "p50"), (0.95, "p95")):
            d, h = (pct(res[(s, clients)]["lat"], q) for s in servers)
            rows.append((f"{label} latency, {clients} client(s) (s)", d, h, d / h))
    for clients in (1, a.clients):
        d, h = (statistics.median(res[(s, clients)]["tok_s"]) for s in servers)
        rows.append((f"throughput, {clients} client(s) (tok/s)", d, h, d / h))
    rows.append(("peak RSS (GB)", rss["distill"], rss["transformers"], rss["distill"] / rss["transformers"]))
    short = {s: sum(1 for c in (1, a.clients) for n in res[(s, c)]["toks"] if n != a.tokens) for s in servers}
    print(f"\nGPT-2 124M shape, random weights, f32, greedy {a.tokens}-token completions; {os.cpu_count()} CPUs; "
          f"{a.repeats} repeats alternating order (median throughput of the repeats, latency percentiles over all requests); "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'':38} {'distill serve':>14} {'transformers':>14} {'distill/tf':>11}")
    for label, d, h, ratio in rows:
        print(f"{label:38} {d:14.2f} {h:14.2f} {ratio:11.2f}")
    if any(short.values()):
        print(f"completions shorter than {a.tokens} tokens (end of text): {short}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": [dict(zip(("metric", "distill", "transformers", "ratio"), r)) for r in rows], "short": short}, f, indent=1)


if __name__ == "__main__":
    main()
