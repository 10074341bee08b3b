#!/usr/bin/env bash
# Installs the system packages the project needs at run and test time (Debian/Ubuntu).
# Idempotent: installs only what is missing, so `make test` and `.ci/run` can call it every time.
#   bubblewrap  the sandbox's isolation (namespaces, read-only binds): pipeline/sandbox
#   python3     the interpreter sandboxed programs run with
#   util-linux  setpriv/unshare, used when diagnosing the sandbox by hand
#   chromium    the report test renders index.html headless and checks the screenshot: pipeline/report
#   groff-base  the CLI test renders `distill man` as a user's `man` would: pipeline/cli
set -euo pipefail
packages=(bubblewrap python3 util-linux chromium groff-base)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
