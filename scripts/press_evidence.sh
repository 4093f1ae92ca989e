#!/usr/bin/env bash
# press_evidence.sh -- what each policy costs on a real ~4k-token prompt:
# KV bytes held, decode tokens/s and next-token agreement with the full cache
# over 256 generated tokens, at ratios 0.25 / 0.5 / 0.75. Writes
# docs/press_evidence.md from the rows of one `longkv eval --task agreement` run.
#
# Protocol (task `agreement`, docs/eval.md): 4096 tokens of Austen are
# prefilled (the policy's one-shot pass runs there), then the full cache
# generates 256 tokens greedily; the policy's context is fed the same tokens in
# lockstep and scores 1 at each step where its argmax equals the full cache's.
# Policies that act while decoding (StreamingLLM, H2O, TOVA, KIVI's groups)
# act between the steps. ~10 minutes on 2 idle cores.
#
#   LONGKV_THREADS (default nproc), LONGKV_BUILD_DIR (default build),
#   LONGKV_EVIDENCE_OUT (default out/press_evidence), LONGKV_EVIDENCE_PRESSES,
#   LONGKV_EVIDENCE_PROMPT (default 4096), LONGKV_EVIDENCE_GEN (default 256),
#   LONGKV_EVIDENCE_PAGE_ONLY=1 (rewrite the page from existing rows).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${LONGKV_BUILD_DIR:-build}
THREADS=${LONGKV_THREADS:-$(nproc)}
OUT=${LONGKV_EVIDENCE_OUT:-out/press_evidence}
PROMPT=${LONGKV_EVIDENCE_PROMPT:-4096}
GEN=${LONGKV_EVIDENCE_GEN:-256}
PRESSES=${LONGKV_EVIDENCE_PRESSES:-streamingllm;h2o;snapkv;pyramidkv;tova;knorm;random;quest;arkvale;int8;kivi:bits=4;kivi:bits=2;snapkv:ratio=0.5+kivi:bits=4}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
PAGE=docs/press_evidence.md

[ -f "$MODEL" ] || bash scripts/get_model.sh
[ -f data/texts/austen.txt ] || bash scripts/get_texts.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$THREADS" --target longkv_cli >/dev/null

CMD=(eval --task agreement --ctx $((PROMPT + GEN)) --ppl-prefix "$PROMPT"
     --ratio 0.25,0.5,0.75 --samples 1 --threads "$THREADS" --press "$PRESSES"
     --no-plots --out "$OUT")
if [ "${LONGKV_EVIDENCE_PAGE_ONLY:-0}" != 1 ]; then
  rm -rf "$OUT"
  START=$(date +%s)
  "$BUILD/longkv" "${CMD[@]}"
  echo $(( $(date +%s) - START )) >"$OUT/seconds.txt"
fi

python3 - "$OUT" "$PAGE" "$PROMPT" "$GEN" "$THREADS" "longkv ${CMD[*]}" <<'EOF'
import json, subprocess, sys
out, page, prompt, gen, threads, cmd = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
try:
    secs = int(open(f"{out}/seconds.txt").read())
except OSError:
    secs = None
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip() or "unknown"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "unknown CPU")
full = next(r for r in rows if r["press"] == "full")
fb = full["kv_bytes"]
w = open(page, "w").write
w("# What each policy costs on a 4k-token prompt\n\n")
w(f"Written by `bash scripts/press_evidence.sh` from one run of\n`{cmd}`\n"
  f"(commit `{commit}`, {cpu}, {threads} thread(s)"
  + (f", {secs // 60} min {secs % 60} s" if secs is not None else "") + ").\n\n")
w(f"SmolLM2-135M-Instruct Q4_1. The prompt is {prompt} tokens of Jane Austen; the policy's "
  f"one-shot pass runs after it (no question: nothing is kept out). Then the full cache "
  f"generates {gen} tokens greedily and the policy's context is fed the same tokens; "
  "**agreement** = share of those steps where the policy's next-token argmax equals the "
  "full cache's, **KL** = mean KL(full || policy) in nats. **KV held** is the pool's "
  "committed bytes after the prompt and the policy's pass (and at the end of the "
  "generation), **% full** against the full cache after the prompt. Decode tokens/s is "
  "timed on the policy's context alone, while a full-cache context runs beside it in "
  "lockstep (so both share the caches of the CPU). Policies without a ratio "
  "(int8, KIVI, compositions with their own ratio) run once; their ratio column is the "
  "measured fraction of bytes removed.\n\n")
w("| policy | ratio | KV held MiB | % full | KV at end MiB | decode tok/s | agreement | KL nats |\n")
w("|---|---|---|---|---|---|---|---|\n")
def key(r):
    return (r["press"] != "full", r.get("policy", r["press"]), r["ratio"])
for r in sorted(rows, key=key):
    kv, kve = r["kv_bytes"], r.get("kv_bytes_end", -1)
    name = r.get("policy", r["press"])
    if r.get("ratio_source") == "nominal" and r["press"] != "full" and "ratio=" not in name:
        name += f" (ratio {r['ratio']:g})"
    w(f"| {name} | {r['ratio']:.2f} | {kv / 2**20:.2f} | {100 * kv / fb:.1f} | "
      f"{kve / 2**20:.2f} | {r['decode_tps']:.1f} | {r['score']:.3f} | "
      f"{r.get('kl_mean', float('nan')):.4f} |\n")
w("\nThe canonical spec of each row (every parameter, defaults included) is its `press` "
  "field in the raw rows: `" + out + "/results.jsonl`.\n")
print(f"press_evidence: wrote {page}")
EOF
