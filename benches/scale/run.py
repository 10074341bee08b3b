"""The scale benchmark of the data path (issue #15): teacher -> filter -> shards -> a few
training steps at several sizes, each stage in a process of its own, measured from the OS.

    make bench-scale                              # 5,000, 20,000 and 50,000 prompts x n=2
    SCALE_SIZES=1000,5000 make bench-scale        # other sizes
    SCALE_BASELINE=/path/to/old/distill make bench-scale   # the same runs with another binary
    SCALE_KILL=20000 make bench-scale             # kill -9 each stage midway, re-run, compare

The teacher is `distill-teacher-testserver --code-tokenizer` in its own process: realistic
answers (Python functions with passing assert tests, ~400 real BPE tokens of the student's
tokenizer, top-20 alternatives with bytes, log-probs that form a distribution). Per stage and
size it prints wall time, peak RSS (ru_maxrss of the stage's process, from wait4), the bytes
per teacher token of what the stage wrote (the teacher cache and each inter-stage file), and
teacher tokens per second. `teacher (cached)` re-runs the teacher stage with every answer in
the cache (it sends nothing). Self-consistency (the sandbox) is off: this measures the data
path, not Python. Results also go to `<work>/results.json`.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("SCALE_WORK", "/tmp/distill-bench-scale"))
SIZES = [int(s) for s in os.environ.get("SCALE_SIZES", "5000,20000,50000").split(",") if s]
BIN = ROOT / "target" / "debug"
DISTILL = Path(os.environ.get("SCALE_DISTILL", BIN / "distill"))
SERVER = BIN / "distill-teacher-testserver"
BASELINE = os.environ.get("SCALE_BASELINE")
TRAIN_STEPS = 5

CONFIG = """
name = "scale"

[tokenizer]
vocab_size = 4096
max_corpus_bytes = 3000000

[teacher]
base_url = "{url}"
model = "scale-teacher"
n = 2
temperature = 0.8
max_tokens = 512
top_logprobs = 20
max_concurrency = 32
requests_per_minute = 0
cache_dir = "{work}/teacher-cache"

[filter.consistency]
enabled = false

[shards]
tokenizer = "{tokenizer}"

[train]
model = "nano"
steps = {steps}
batch_size = 8
seq_len = 512
eval_every = 0
checkpoint_every = 0
"""


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run(cmd, log: Path):
    """Runs cmd; returns (wall seconds, peak RSS bytes, CPU seconds (user + system) of that process)."""
    t0 = time.monotonic()
    with open(log, "ab") as out:
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=out)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(map(str, cmd))}; see {log}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def write_prompts(path: Path, n: int):
    with open(path, "w") as f:
        for i in range(n):
            text = f"Write Python functions for task {i}: helpers that {['count', 'merge', 'scale', 'rank'][i % 4]} records, with docstrings and assert tests."
            f.write(json.dumps({"id": f"scale-{i:07d}", "messages": [{"role": "user", "content": text}], "meta": {"language": "python", "task_type": "implement_from_spec"}}) + "\n")


def stage_stats(work: Path, stage: str) -> dict:
    p = work / stage / "stats.json"
    return json.loads(p.read_text()) if p.exists() else {}


def bench_size(distill: Path, label: str, n: int, tokenizer: Path) -> list:
    work = WORK / f"{label}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "log.txt"
    prompts = work / "prompts.jsonl"
    write_prompts(prompts, n)
    server = subprocess.Popen([str(SERVER), "--threads", "2", "--code-tokenizer", str(tokenizer)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = server.stdout.readline().split()[-1]
    try:
        config = work / "scale.toml"
        config.write_text(CONFIG.format(url=url, work=work, tokenizer=tokenizer, steps=TRAIN_STEPS))
        base = [distill, "--config", config, "--work-dir", work, "--quiet", "--only"]
        rows = []
        steps = [
            ("teacher", ["teacher", "--prompts", prompts]),
            ("teacher (cached)", ["--force", "teacher", "--prompts", prompts]),
            ("filter", ["filter"]),
            ("shards", ["shards"]),
            (f"train ({TRAIN_STEPS} steps)", ["train"]),
        ]
        for name, args in steps:
            wall, rss, cpu = run(base + args, log)
            rows.append({"size": n, "binary": label, "stage": name, "wall_s": wall, "cpu_s": cpu, "peak_rss": rss})
            print(f"  {label} {n:>6} {name:<18} {wall:8.1f} s  {cpu:8.1f} CPU-s  {rss / 2**30:6.2f} GiB", flush=True)
    finally:
        server.kill()
        server.wait()
    t = stage_stats(work, "teacher")
    tokens = t.get("teacher_tokens_with_logprobs") or t.get("completion_tokens") or 0
    on_disk = {
        "teacher": du(work / "teacher-cache"),
        "teacher (cached)": du(work / "teacher" / "responses.jsonl") + du(work / "teacher" / "logprobs.frames"),
        "filter": du(work / "filter" / "kept.jsonl"),
        "shards": sum(du(p) for p in (work / "shards").glob("*.parquet")),
    }
    for r in rows:
        r["teacher_tokens"] = tokens
        r["bytes"] = on_disk.get(r["stage"])
        r["bytes_per_token"] = on_disk[r["stage"]] / tokens if r["stage"] in on_disk and tokens else None
        r["tokens_per_s"] = tokens / r["wall_s"] if not r["stage"].startswith("train") else None
        # Per core: the stage's CPU time (all its threads), as issue #15's throughput target counts it.
        r["tokens_per_cpu_s"] = tokens / r["cpu_s"] if not r["stage"].startswith("train") and r["cpu_s"] else None
    rows[0]["filter_kept"] = stage_stats(work, "filter").get("kept")
    if os.environ.get("SCALE_KEEP") != "1":
        shutil.rmtree(work / "teacher-cache", ignore_errors=True)
    return rows


def digests(stage_dir: Path) -> dict:
    """sha256 of every output file of a stage but its run records (timings)."""
    import hashlib
    out = {}
    for f in sorted(stage_dir.rglob("*")):
        if f.is_file() and f.name not in ("stats.json", "manifest.json"):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[str(f.relative_to(stage_dir))] = h.hexdigest()
    return out


def kill_check(n: int, tokenizer: Path):
    """Every stage killed with SIGKILL halfway through, then run again: the outputs must equal
    an uninterrupted run's byte for byte, and the teacher must request exactly the prompts
    whose answers were not in the cache at the kill."""
    ref, killed = WORK / f"kill-ref-{n}", WORK / f"kill-{n}"
    for w in (ref, killed):
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
    prompts = ref / "prompts.jsonl"
    write_prompts(prompts, n)
    server = subprocess.Popen([str(SERVER), "--threads", "2", "--code-tokenizer", str(tokenizer)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = server.stdout.readline().split()[-1]
    stages = [("teacher", ["teacher", "--prompts", prompts]), ("filter", ["filter"]), ("shards", ["shards"]), ("train", ["train"])]
    try:
        walls = {}
        for w in (ref, killed):
            (w / "scale.toml").write_text(CONFIG.format(url=url, work=w, tokenizer=tokenizer, steps=TRAIN_STEPS))
        for name, args in stages:
            walls[name], _, _ = run([DISTILL, "--config", ref / "scale.toml", "--work-dir", ref, "--quiet", "--only"] + args, ref / "log.txt")
        base = [DISTILL, "--config", killed / "scale.toml", "--work-dir", killed, "--quiet", "--only"]
        for name, args in stages:
            with open(killed / "log.txt", "ab") as log:
                p = subprocess.Popen([str(c) for c in base + args], stdout=log, stderr=log)
                time.sleep(walls[name] / 2)
                p.kill()
                p.wait()
            note = ""
            if name == "teacher":
                plan = subprocess.run([str(c) for c in base + ["teacher", "--prompts", prompts, "--dry-run"]], capture_output=True, text=True).stdout
                cached = int(next(l.split()[1] for l in plan.splitlines() if l.startswith("cached ")))
            run(base + args, killed / "log.txt")
            if name == "teacher":
                requested = stage_stats(killed, "teacher")["requested"]
                ok_requests = requested == n - cached
                note = f"; {cached:,} answers cached at the kill, re-run requested {requested:,} (expected {n - cached:,}): {'ok' if ok_requests else 'WRONG'}"
            same = digests(ref / name) == digests(killed / name)
            print(f"  kill -9 at {walls[name] / 2:.0f} s of {name} ({n:,} prompts): outputs {'identical' if same else 'DIFFER'} to the uninterrupted run{note}", flush=True)
    finally:
        server.kill()
        server.wait()


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    tok_work = WORK / "tokenizer-work"
    tok_work.mkdir(exist_ok=True)
    cfg = tok_work / "scale.toml"
    cfg.write_text(CONFIG.format(url="http://127.0.0.1:9/v1", work=tok_work, tokenizer="", steps=TRAIN_STEPS))
    run([DISTILL, "--config", cfg, "--work-dir", tok_work, "--quiet", "tokenizer"], tok_work / "log.txt")
    tokenizer = tok_work / "tokenizer" / "tokenizer.json"
    if os.environ.get("SCALE_KILL"):
        kill_check(int(os.environ["SCALE_KILL"]), tokenizer)
        return
    binaries = [("new", DISTILL)] + ([("baseline", Path(BASELINE))] if BASELINE else [])
    rows = []
    for n in SIZES:
        for label, binary in binaries:
            rows += bench_size(binary, label, n, tokenizer)
    (WORK / "results.json").write_text(json.dumps(rows, indent=1))
    print()
    print("| binary | prompts | teacher tokens | stage | wall | CPU | peak RSS | on disk | bytes/token | teacher tokens/s | per CPU-s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        disk = f"{r['bytes'] / 2**20:,.0f} MiB" if r.get("bytes") is not None else "-"
        bpt = f"{r['bytes_per_token']:.0f}" if r.get("bytes_per_token") else "-"
        tps = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "-"
        tpc = f"{r['tokens_per_cpu_s']:,.0f}" if r.get("tokens_per_cpu_s") else "-"
        print(f"| {r['binary']} | {r['size']:,} | {r['teacher_tokens']:,} | {r['stage']} | {r['wall_s']:.1f} s | {r['cpu_s']:.1f} s | {r['peak_rss'] / 2**30:.2f} GiB | {disk} | {bpt} | {tps} | {tpc} |")
    print_marginal(rows)


def print_marginal(rows):
    """Tokens per CPU-second between two sizes of one binary: (tokens_b - tokens_a) / (cpu_b -
    cpu_a). Each stage is its own process, whose fixed costs (start-up, checking the DAG's
    fingerprints, two Python start-ups for the corpus paths) do not grow with the data; the
    difference leaves them out and keeps what moving each further token costs."""
    lines = []
    for stage in ("filter", "shards"):
        for label in dict.fromkeys(r["binary"] for r in rows):
            runs = sorted((r for r in rows if r["binary"] == label and r["stage"] == stage), key=lambda r: r["teacher_tokens"])
            for a, b in zip(runs, runs[1:]):
                if b["cpu_s"] > a["cpu_s"]:
                    rate = (b["teacher_tokens"] - a["teacher_tokens"]) / (b["cpu_s"] - a["cpu_s"])
                    lines.append(f"| {label} | {stage} | {a['size']:,} -> {b['size']:,} | {b['cpu_s'] - a['cpu_s']:.1f} s | {rate:,.0f} |")
    if lines:
        print()
        print("| binary | stage | prompts | extra CPU | extra teacher tokens per extra CPU-s |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
