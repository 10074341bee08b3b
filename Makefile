# distill: one binary, one Makefile. `make distill` runs the whole pipeline on CONFIG;
# `make <stage>` runs one stage (and whatever upstream of it is out of date); `make test`.
CONFIG ?= configs/default.toml
ARGS ?=
CARGO ?= cargo
# The dev profile compiles the numeric crates (candle, gemm, tokenizers, zstd) at opt-level 3
# (see Cargo.toml), so the offline default runs at near-release speed and a fresh clone builds
# in a fraction of a release build's time; `make distill PROFILE=release` for long runs.
PROFILE ?= dev
BIN := target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/distill
DISTILL := $(BIN) --config $(CONFIG) $(ARGS)

STAGES := tokenizer teacher-bootstrap prompts teacher filter shards train eval report

.PHONY: distill build status test bench bench-gpu bench-scale bench-xtok bench-serve bench-quant bench-train-cpu cuda clean-work $(STAGES)

distill: build
	$(DISTILL) run

build:
	$(CARGO) build --profile $(PROFILE) --bin distill

status: build
	$(DISTILL) status

$(STAGES): build
	$(DISTILL) $@

# Tests: format and lint checks, system packages (sandbox) and the Python reference packages
# first, then every crate.
test:
	bash scripts/lint.sh
	bash scripts/system-deps.sh
	bash scripts/python-env.sh
	DISTILL_TEST_PYTHON=$(CURDIR)/.venv/bin/python $(CARGO) test --workspace

# Benchmarks: ours and the reference side by side, printed as ratios.
# On a GPU machine with torch + transformers: distill (CUDA build) beside PyTorch eager and
# torch.compile, same student, batch and loss; prints the table of benches/gpu/RESULTS.md.
bench-gpu:
	bash benches/gpu/run.sh

# The data path at 5,000 / 20,000 / 50,000 prompts x n=2 with top-20 log-probs (issue #15):
# wall time, peak RSS, bytes per teacher token, per stage and size (benches/scale/run.py).
bench-scale:
	$(CARGO) build --profile $(PROFILE) --bin distill --bin distill-teacher-testserver
	python3 benches/scale/run.py

# Cross-tokenizer distillation end to end (a teacher with its own BPE): soft-labelled bytes
# and held-out bits per byte of KD vs CE-only over 3 seeds (benches/xtok/run.py, ~25 minutes).
bench-xtok:
	$(CARGO) build --profile $(PROFILE) --bin distill
	XTOK_DISTILL=$(CURDIR)/$(BIN) .venv/bin/python benches/xtok/run.py

# Small machines (issue #24), on this machine's CPU: `distill serve` beside transformers'
# `generate` behind an HTTP server, GPT-2 124M shape, 64-token completions at 1 and 16 clients
# (p50/p95 latency, tokens/s, peak RSS; benches/serve/run.py, ~10 minutes on 2 cores), and
# `distill train --bench` beside PyTorch, GPT-2 124M, 2 x 512 x grad_accum 4, top-20 KD + CE,
# with and without activation checkpointing (benches/train-cpu/run.py; ~15 minutes a run of distill
# alone on the loaded 2-core machine, so up to an hour for all four).
bench-serve:
	$(CARGO) build --profile $(PROFILE) --bin distill
	.venv/bin/python benches/serve/run.py --distill $(CURDIR)/$(BIN)

# Quantized inference (issue #21): distill serve with f32 / q8_0 / q4_k weights (GPT-2 124M
# shape: tokens/s at 1 and 8 clients, RSS), and on the offline default's student (datasets/default,
# after `make distill`) held-out NLL and pass@1 per quantization (benches/quant/run.py).
bench-quant:
	$(CARGO) build --profile $(PROFILE) --bin distill
	.venv/bin/python benches/quant/run.py --distill $(CURDIR)/$(BIN)

bench-train-cpu:
	$(CARGO) build --profile $(PROFILE) --bin distill
	.venv/bin/python benches/train-cpu/run.py --distill $(CURDIR)/$(BIN)

bench:
	bash scripts/system-deps.sh
	bash scripts/python-env.sh
	DISTILL_TEST_PYTHON=$(CURDIR)/.venv/bin/python $(CARGO) bench --workspace
	$(MAKE) bench-xtok

# CUDA build of the binary (see scripts/build-cuda.sh): target/release/distill with candle's CUDA
# kernels for sm_90, gzipped into bin/distill-cuda.gz for the GPU machine, and the GPU tests into
# bin/cuda-tests/ (run there with `bash benches/gpu/test.sh`).
cuda:
	bash scripts/build-cuda.sh

clean-work:
	rm -rf datasets/
