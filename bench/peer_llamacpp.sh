#!/usr/bin/env bash
# peer_llamacpp.sh -- llama.cpp's CPU FLASH_ATTN_EXT next to longkv's attention
# kernels, at shapes both can run, on this machine and in the same minute.
#
# llama.cpp comes from the llama-cpp-python sdist (PyPI), which vendors it. Only
# ggml and tests/test-backend-ops.cpp are built, under $PEER_DIR (never inside
# this repository); nothing of llama.cpp is kept here. Its "perf" mode runs a
# fixed list of cases; we pick the FLASH_ATTN_EXT ones that longkv can also run:
#   decode   hsk=hsv=64, 8 KV heads x 8 = 64 query heads, n_kv=7680, 1 query, f16
#   prefill  hsk=hsv=72, 16 heads (no GQA), n_q=n_kv=5776, no causal mask, f16
# test-backend-ops gives the CPU backend hardware_concurrency/2 threads, so
# longkv runs with the same count.
#
# usage: bash bench/peer_llamacpp.sh [path/to/longkv]
# env:   LLAMACPP_SDIST  the sdist (default /tmp/lcpp-dl/llama_cpp_python-0.3.36.tar.gz;
#                        fetch it with `pip download --no-deps --no-binary :all:
#                        llama-cpp-python==0.3.36`)
#        PEER_DIR        build directory (default /tmp/longkv-peer)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LONGKV=${1:-$ROOT/build/longkv}
SDIST=${LLAMACPP_SDIST:-/tmp/lcpp-dl/llama_cpp_python-0.3.36.tar.gz}
PEER_DIR=${PEER_DIR:-/tmp/longkv-peer}
mkdir -p "$PEER_DIR"
PEER_DIR=$(cd "$PEER_DIR" && pwd)
case "$PEER_DIR/" in
  "$ROOT"/*) echo "peer_llamacpp: PEER_DIR must be outside the repository" >&2; exit 2 ;;
esac
[[ -x $LONGKV ]] || { echo "peer_llamacpp: no longkv binary at $LONGKV (build first)" >&2; exit 2; }
[[ -f $SDIST ]] || { echo "peer_llamacpp: sdist not found: $SDIST" >&2; exit 2; }

# ---------------------------------------------------------------- build llama.cpp
SRC=$PEER_DIR/src
if [[ ! -f $SRC/llama.cpp/tests/test-backend-ops.cpp ]]; then
  echo "== extracting ggml + test-backend-ops from $(basename "$SDIST")"
  top=$(basename "$SDIST" .tar.gz)  # an sdist's files live under name-version/
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar xzf "$SDIST" -C "$SRC" "$top/vendor/llama.cpp/ggml" "$top/vendor/llama.cpp/tests/test-backend-ops.cpp"
  mv "$SRC/$top/vendor/llama.cpp" "$SRC/llama.cpp"
  rm -rf "${SRC:?}/$top"
fi
# A two-line project: ggml as a subdirectory plus the one test program.
cat > "$PEER_DIR/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.14)
project(longkv_peer C CXX)
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
add_subdirectory($SRC/llama.cpp/ggml ggml)
add_executable(test-backend-ops $SRC/llama.cpp/tests/test-backend-ops.cpp)
target_compile_features(test-backend-ops PRIVATE cxx_std_17)
target_link_libraries(test-backend-ops PRIVATE ggml)
EOF
BIN=$PEER_DIR/build/test-backend-ops
if [[ ! -x $BIN ]]; then
  echo "== building ggml (CPU backend, GGML_NATIVE) and test-backend-ops in $PEER_DIR/build"
  cmake -S "$PEER_DIR" -B "$PEER_DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DGGML_CCACHE=OFF >"$PEER_DIR/cmake.log" 2>&1 || { tail -30 "$PEER_DIR/cmake.log"; exit 1; }
  nice cmake --build "$PEER_DIR/build" --target test-backend-ops -j"$(nproc)" \
        >"$PEER_DIR/build.log" 2>&1 || { tail -30 "$PEER_DIR/build.log"; exit 1; }
fi

# ---------------------------------------------------------------- run both
THREADS=$(( $(nproc) / 2 )); (( THREADS >= 1 )) || THREADS=1
OUT=$PEER_DIR/results; mkdir -p "$OUT"
echo "== llama.cpp test-backend-ops perf (CPU, $THREADS thread(s))"
"$BIN" perf -b CPU -o FLASH_ATTN_EXT \
  -p 'hsk=(64,hsv=64,nh=8,nr23=\[8,1\],kv=7680,nb=1|72,hsv=72,nh=16,nr23=\[1,1\],kv=5776,nb=5776),.*type_K=f16,type_V=f16' \
  >"$OUT/llamacpp.txt" 2>"$OUT/llamacpp.err" || { tail -20 "$OUT/llamacpp.err"; exit 1; }
echo "== longkv bench attn ($THREADS thread(s))"
"$LONGKV" bench attn --json --threads "$THREADS" --dtype f16 --op decode --shape 64x8x64 --ctx 7680 \
  >"$OUT/longkv.jsonl"
"$LONGKV" bench attn --json --threads "$THREADS" --dtype f16 --op prefill --shape 16x16x72 --nq 5776 \
  --causal 0 | grep '"op":"prefill"' >>"$OUT/longkv.jsonl"

python3 - "$OUT/llamacpp.txt" "$OUT/longkv.jsonl" "$THREADS" <<'EOF'
import json, re, sys
lcpp_txt, ours_jsonl, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
# console lines: "  FLASH_ATTN_EXT(hsk=..,nb=1,..):   N runs -   T us/run - ..."
line_re = re.compile(r"FLASH_ATTN_EXT\((.*)\):\s+\d+ runs -\s+([\d.]+) us/run")
lcpp = {}
for line in open(lcpp_txt):
    m = line_re.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if not m:
        continue
    p = dict(re.findall(r"(\w+)=(\[[^\]]*\]|[^,]+)", m.group(1)))
    key = "decode" if p.get("nb") == "1" else "prefill"
    lcpp[key] = (float(m.group(2)), m.group(1))
ours, limits = {}, {}
for line in open(ours_jsonl):
    r = json.loads(line)
    if r["op"] in ("decode", "prefill"):
        ours[r["op"]] = r
    elif r["op"] == "limit" and r["threads"] == threads:
        limits[r.get("level", r["kind"])] = r.get("gbps", r.get("gflops"))
print()
print("same shapes, f16 K/V, %d thread(s); time per call, lower is better" % threads)
print("(llama.cpp: mean over >= 1 s of runs; longkv: median of its repetitions)")
print("%-44s %14s %14s %8s" % ("case", "llama.cpp us", "longkv us", "speedup"))
rows = [("decode", "decode  H=64 Hk=8 d=64 n_kv=7680 n_q=1"),
        ("prefill", "prefill H=16 Hk=16 d=72 n=5776, no mask")]
for key, label in rows:
    l = lcpp.get(key)
    o = ours.get(key)
    lt = "%.1f" % l[0] if l else "n/a"
    ot = "%.1f" % (o["seconds_median"] * 1e6) if o else "n/a"
    sp = "%.2fx" % (l[0] / (o["seconds_median"] * 1e6)) if l and o else "-"
    print("%-44s %14s %14s %8s" % (label, lt, ot, sp))
    if o and key == "decode":
        kv = o["bytes"]
        print("    K+V %.1f MB: llama.cpp %s GB/s, longkv %.1f GB/s (%s limit %.1f GB/s)" % (
            kv / 1e6, "%.1f" % (kv / l[0] / 1e3) if l else "n/a", kv / o["seconds_median"] / 1e9,
            o["limit_name"], o["limit"]))
    if o and key == "prefill":
        fl = o["gflops"] * o["seconds"] * 1e9
        print("    %.1f GFLOP: llama.cpp %s GFLOP/s, longkv %.1f GFLOP/s (FMA peak %.1f)" % (
            fl / 1e9, "%.1f" % (fl / l[0] / 1e3) if l else "n/a", fl / o["seconds_median"] / 1e9,
            o["limit"]))
print("\nllama.cpp params:", "; ".join(v[1] for v in lcpp.values()) or "none matched")
print("raw results in", sys.argv[1], "and", sys.argv[2])
EOF
