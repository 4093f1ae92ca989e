#!/usr/bin/env bash
# demo.sh -- the main job: set up, build, and run the attention benchmark
# (later: the real-model long-context demo with a compressed cache).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/longkv info
./build/longkv bench attn --quick
