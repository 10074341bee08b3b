"""One stage of the data path, two binaries, the same inputs: an A/B of CPU time per teacher token.

    python3 benches/scale/stage_ab.py WORK STAGE NEW_BINARY OLD_BINARY [ROUNDS]

WORK is a work folder of `make bench-scale` (SCALE_KEEP=1 keeps one; `<size>` in its name is
the prompt count) whose earlier stages have run; STAGE is `filter` or `shards`. Each round
re-runs the stage (`--force`) with each binary in turn, from the repository root. Per run it
prints wall time, CPU time (user + system of the stage's process and what it waited for, from
wait4), peak RSS and the teacher tokens per CPU-second; then the medians and their ratio.
The filter's CPU time includes its Python parse check (a child process), which issue #15
counts with the sandbox, outside the data path: read `perf record` for the in-process part.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_stage(binary: str, work: Path, stage: str):
    cmd = [binary, "--config", str(work / "scale.toml"), "--work-dir", str(work), "--quiet", "--only", "--force", stage]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main():
    work, stage, new, old = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    tokens = json.loads((work / "teacher" / "stats.json").read_text())["teacher_tokens_with_logprobs"]
    results = {"new": [], "old": []}
    for r in range(rounds):
        for label, binary in (("old", old), ("new", new)):
            wall, cpu, rss = run_stage(binary, work, stage)
            out = sum(f.stat().st_size for f in (work / stage).glob("*") if f.suffix in (".parquet", ".jsonl"))
            results[label].append(cpu)
            print(f"round {r + 1} {label}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s, {rss / 2**30:.2f} GiB, {tokens / cpu / 1e6:.2f}M teacher tokens per CPU-s, {out / tokens:.1f} bytes/token written", flush=True)
    m_new, m_old = statistics.median(results["new"]), statistics.median(results["old"])
    print(f"{stage}, {tokens:,} teacher tokens: median CPU {m_old:.1f} s (old) -> {m_new:.1f} s (new), {m_old / m_new:.2f}x; new {tokens / m_new / 1e6:.2f}M tokens per CPU-s")


if __name__ == "__main__":
    main()
