"""Record-browsing latency of `distill dashboard` over a work dir of real size (issue #20).

Starts the dashboard over WORK (a work dir of `make bench-scale`, e.g. 5,000 prompts), waits
for its record indexes, then asks for pages at random offsets of every kind of record and
prints the latency per endpoint (median, p95, max over N requests, one client, keep-alive).

    python3 benches/dashboard/latency.py WORK CONFIG [DISTILL] [N]
"""
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time

work, config = sys.argv[1], sys.argv[2]
distill = sys.argv[3] if len(sys.argv) > 3 else "target/debug/distill"
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200

proc = subprocess.Popen([distill, "--config", config, "--work-dir", work, "dashboard", "--bind", "127.0.0.1:0", "--rate-limit", "100000"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    addr = proc.stdout.readline().strip().removeprefix("dashboard: http://").rstrip("/")
    host, port = addr.rsplit(":", 1)
    t0 = time.time()
    # The indexes are built in the background at start; the log says when.
    for line in proc.stderr:
        if "record indexes built" in line:
            break
    print(f"indexes built in {time.time() - t0:.2f} s (log: {line.strip()[-60:]})")
    conn = http.client.HTTPConnection(host, int(port))

    def get(path):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t) * 1000
        assert r.status == 200, (path, r.status, body[:300])
        return ms, json.loads(body)

    _, kept = get("/api/v1/records/kept?limit=1")
    _, excl = get("/api/v1/records/exclusions?limit=1")
    _, answers = get("/api/v1/records/answers?limit=1")
    _, rows = get("/api/v1/shard-rows?split=train&limit=1")
    facets = [(f, r) for f, rs in excl["facets"]["reason"].items() for r in [f]]
    ids = [get(f"/api/v1/records/answers?offset={random.randrange(answers['total'])}&limit=1")[1]["records"][0]["record"]["id"] for _ in range(20)]
    print(f"records: kept {kept['total']}, exclusions {excl['total']}, answers {answers['total']}, train shard rows {rows['total']}")
    cases = {
        "kept, page of 50 at a random offset": lambda: f"/api/v1/records/kept?offset={random.randrange(kept['total'])}&limit=50",
        "exclusions by reason, page of 50": lambda: f"/api/v1/records/exclusions?reason={random.choice(list(excl['facets']['reason']))}&offset=0&limit=50",
        "answers, page of 50 at a random offset": lambda: f"/api/v1/records/answers?offset={random.randrange(answers['total'])}&limit=50",
        "answers, by id (binary search)": lambda: f"/api/v1/records/answers?id={random.choice(ids)}",
        "one answer's tokens + top-20 (logprobs.frames)": lambda: f"/api/v1/records/answers/{random.choice(ids)}/tokens?sample={random.randrange(2)}",
        "shard rows, page of 50 at a random offset": lambda: f"/api/v1/shard-rows?split=train&offset={random.randrange(rows['total'])}&limit=50",
        "one shard row in full (tokens, top-k text)": lambda: f"/api/v1/shard-rows/{random.randrange(rows['total'])}?split=train",
    }
    # With a trained student in WORK/train: the same with its probabilities (a forward pass).
    if os.path.isfile(os.path.join(work, "train", "model.safetensors")):
        get("/api/v1/shard-rows/0?split=train&student=1")  # loads the model
        cases["one shard row with the student's probabilities"] = lambda: f"/api/v1/shard-rows/{random.randrange(rows['total'])}?split=train&student=1"

    print(f"{'request':50} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, path in cases.items():
        times = sorted(get(path())[0] for _ in range(n))
        print(f"{name:50} {statistics.median(times):10.2f} {times[int(0.95 * len(times)) - 1]:8.2f} {times[-1]:8.2f}")
finally:
    proc.kill()
