#!/usr/bin/env bash
# Format and lint checks of `make test`: the tree is rustfmt-clean (rustfmt.toml) and clippy
# finds nothing in any target, warnings included. Fails on the first problem, naming the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
if ! $CARGO fmt --version >/dev/null 2>&1 || ! $CARGO clippy --version >/dev/null 2>&1; then
    echo "lint: cargo fmt and cargo clippy are needed (rustup component add rustfmt clippy)" >&2
    exit 1
fi
$CARGO fmt --all -- --check || { echo "lint: the tree is not formatted: run 'cargo fmt --all'" >&2; exit 1; }
$CARGO clippy --workspace --all-targets --quiet -- -D warnings || { echo "lint: clippy found problems (above)" >&2; exit 1; }
