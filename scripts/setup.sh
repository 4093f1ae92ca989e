#!/usr/bin/env bash
# setup.sh -- installs what longkv needs on a Debian machine (idempotent; skips
# what is already there), then downloads the default model and extracts the
# eval texts.
#   LONGKV_SKIP_MODEL=1  do not download models
#   LONGKV_SKIP_TEXTS=1  do not extract the eval texts (scripts/get_texts.sh)
#   LONGKV_SKIP_PLOT=1   do not install matplotlib (scripts/plot_results.py)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(cmake gcc make clang)
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ -z ${LONGKV_SKIP_MODEL:-} && -x scripts/get_model.sh ]]; then
  bash scripts/get_model.sh
fi

if [[ -z ${LONGKV_SKIP_TEXTS:-} ]]; then
  bash scripts/get_texts.sh
fi

# Plots: matplotlib from PyPI. A Debian system python refuses a plain pip
# install (PEP 668), so fall back to a user install that overrides it, then to
# Debian's own package.
if [[ -z ${LONGKV_SKIP_PLOT:-} ]] && command -v python3 >/dev/null 2>&1 &&
   ! python3 -c 'import matplotlib' >/dev/null 2>&1; then
  echo "setup: installing matplotlib"
  python3 -m pip install --quiet matplotlib >/dev/null 2>&1 ||
    python3 -m pip install --quiet --user --break-system-packages matplotlib >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-matplotlib >/dev/null; } ||
    echo "setup: could not install matplotlib (plots will be skipped)" >&2
fi
echo "setup: ok"
