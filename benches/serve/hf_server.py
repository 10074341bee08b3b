"""The reference for benches/serve/run.py: transformers' `generate` behind a small HTTP server,
as a user without a serving stack would run it.

POST /v1/completions with {"prompt", "max_tokens"} answers OpenAI's shape (text, usage). One
worker thread owns the model and batches what arrives together: it blocks for the first request,
collects more for --batch-wait-ms (up to --max-batch), then runs one left-padded, greedy
`model.generate` for the batch (KV cache on, as transformers does by default) and answers every
request of it; requests arriving meanwhile form the next batch (static batching).

Every request is decoded to exactly max_tokens (`min_new_tokens`): the benchmark times fixed
64-token completions on a random-weight model, whose end-of-text id would otherwise end some
rows at random.

    python hf_server.py MODEL_DIR PORT [--threads 2] [--max-batch 16] [--batch-wait-ms 5]
"""

import argparse
import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("port", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{a.model_dir}/tokenizer.json")
    tok.pad_token_id = 0
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32).eval()
    jobs = queue.Queue()

    def worker():
        while True:
            batch = [jobs.get()]
            deadline = time.monotonic() + a.batch_wait_ms / 1000
            while len(batch) < a.max_batch:
                try:
                    batch.append(jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                enc = tok([j["prompt"] for j in batch], return_tensors="pt", padding=True)
                n = max(j["max_tokens"] for j in batch)
                with torch.inference_mode():
                    out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
                new = out[:, enc["input_ids"].shape[1]:]
                for j, row, plen in zip(batch, new, enc["attention_mask"].sum(1).tolist()):
                    ids = row[: j["max_tokens"]].tolist()
                    j["answer"] = {"text": tok.decode(ids), "prompt_tokens": plen, "completion_tokens": len(ids)}
            except Exception as e:  # the client sees a 500, the server goes on
                for j in batch:
                    j["answer"] = {"error": repr(e)}
            for j in batch:
                j["done"].set()

    threading.Thread(target=worker, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            job = {"prompt": body["prompt"], "max_tokens": int(body.get("max_tokens", 16)), "done": threading.Event()}
            jobs.put(job)
            job["done"].wait()
            ans = job["answer"]
            if "error" in ans:
                self.reply(500, {"error": {"message": ans["error"]}})
                return
            usage = {"prompt_tokens": ans["prompt_tokens"], "completion_tokens": ans["completion_tokens"]}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self.reply(200, {"object": "text_completion", "choices": [{"index": 0, "text": ans["text"], "finish_reason": "length"}], "usage": usage})

        def do_GET(self):
            self.reply(200, {"status": "ok"})

        def reply(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
