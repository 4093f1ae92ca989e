#!/usr/bin/env bash
# setup.sh -- installs what longkv needs on a Debian machine (idempotent; skips
# what is already there), then downloads the default model.
#   LONGKV_SKIP_MODEL=1  do not download models
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
echo "setup: ok"
