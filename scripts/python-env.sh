#!/usr/bin/env bash
# Creates .venv with the reference packages that tests and benchmarks compare against.
# Idempotent: re-running only installs what changed in scripts/requirements-test.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch from PyPI brings its CUDA libraries: the venv takes ~6 GB. Say so up front rather than
  # leave pip to fail half-way with "No space left on device".
  free_kb=$(df -Pk .venv | awk 'NR==2 {print $4}')
  if [ ! -d .venv/lib/*/site-packages/torch ] && [ "$free_kb" -lt $((7 * 1024 * 1024)) ]; then
    echo "python-env: .venv needs about 7 GB free for scripts/requirements-test.txt (torch with its CUDA libraries); $((free_kb / 1024)) MB free on $(df -P .venv | awk 'NR==2 {print $6}'). Free some space and run make test again." >&2
    exit 1
  fi
  # No pip cache: it would hold a second copy of the ~3 GB of wheels.
  .venv/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi
