#!/usr/bin/env python3
"""compare_model_llamacpp.py -- `longkv bench model` next to llama.cpp, same run.

Runs `longkv bench model --json` and then the same cases on llama.cpp through
llama-cpp-python (same GGUF file, same thread count, flash attention on, f16 KV
cache, same prefill chunk as n_batch/n_ubatch), and prints one table:

    prefill P   fresh context, P prompt tokens           tokens/s
    decode @C   C tokens in the cache, one token a step   tokens/s

Both engines see the same pseudo-random stream of ordinary token ids (speed
does not depend on the text). Decode contexts come from one prefill of the
largest C, truncated down (llama.cpp: KV entries past C removed).
Wall-clock rates plus CPU ms per token: on a shared machine the CPU time shows
how much of the wall time other processes took.

Usage: /tmp/lcpp-venv/bin/python bench/compare_model_llamacpp.py [--longkv build/longkv]
       [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [-t 2] [--prefill 512,4096]
       [--decode 512,2048,4096,8192] [--gen 32] [--batch 256] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_longkv():
    for d in ("build-model", "build", "build-release"):
        p = os.path.join(ROOT, d, "longkv")
        if os.access(p, os.X_OK):
            return p
    return None


def token_stream(n, n_vocab):
    """The stream bench_model.c uses (same LCG), so both engines see the same ids."""
    x = 0x9E3779B97F4A7C15
    lo = 300 if n_vocab > 1000 else 0
    out = []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append(lo + (x >> 33) % (n_vocab - lo))
    return out


def bench_llamacpp(model, threads, prefill, decode, gen, batch):
    import llama_cpp

    decode = sorted(decode, reverse=True)
    n_ctx = max(max(prefill), decode[0] + gen) + 16
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=batch, n_ubatch=batch,
                          n_threads=threads, n_threads_batch=threads, flash_attn=True,
                          type_k=llama_cpp.GGML_TYPE_F16, type_v=llama_cpp.GGML_TYPE_F16,
                          logits_all=False, verbose=False)
    toks = token_stream(n_ctx, llm.n_vocab())
    res = {"engine": "llama.cpp", "prefill": {}, "decode": {},
           "prefill_cpu_s_per_token": {}, "decode_cpu_s_per_token": {}}
    llm.reset()
    llm.eval(toks[:8])  # warm-up
    for p in prefill:
        llm.reset()
        llm._ctx.kv_cache_clear()
        t0, c0 = time.perf_counter(), time.process_time()
        llm.eval(toks[:p])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        res["prefill"][str(p)] = p / dt
        res["prefill_cpu_s_per_token"][str(p)] = dc / p
        print(f"  llama.cpp prefill {p:5d}: {p / dt:8.1f} tokens/s", file=sys.stderr)
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(toks[: decode[0]])
    for c in decode:
        llm.n_tokens = c  # eval() drops KV entries past n_tokens first
        t0, c0 = time.perf_counter(), time.process_time()
        for g in range(gen):
            llm.eval([toks[c + g]])
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        res["decode"][str(c)] = gen / dt
        res["decode_cpu_s_per_token"][str(c)] = dc / gen
        print(f"  llama.cpp decode @{c:5d}: {gen / dt:8.1f} tokens/s", file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longkv", default=find_longkv())
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--prefill", default="512,4096")
    ap.add_argument("--decode", default="512,2048,4096,8192")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args()
    prefill = [int(x) for x in a.prefill.split(",")]
    decode = [int(x) for x in a.decode.split(",")]
    if not a.longkv:
        print("compare_model_llamacpp: longkv binary not found (--longkv)", file=sys.stderr)
        return 2
    cmd = [a.longkv, "bench", "model", "-m", a.model, "-t", str(a.threads), "-b", str(a.batch),
           "--prefill", a.prefill, "--decode", a.decode, "--gen", str(a.gen), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        return 2
    ours = json.loads(r.stdout)
    try:
        theirs = bench_llamacpp(a.model, a.threads, prefill, decode, a.gen, a.batch)
    except ImportError:
        print("compare_model_llamacpp: llama-cpp-python is not installed; longkv only")
        theirs = None
    print(f"model {os.path.basename(a.model)}, {a.threads} threads, prefill chunk {a.batch}, "
          f"{a.gen} decode steps, KV f16 (llama.cpp: flash attention on)")
    print(f"{'case':<14} {'longkv tok/s':>13} {'llama.cpp tok/s':>16} {'ratio':>7} "
          f"{'longkv cpu ms/tok':>18} {'llama.cpp cpu ms/tok':>21}")
    rows = [("prefill", str(p)) for p in prefill] + [("decode", str(c)) for c in decode]
    for kind, size in rows:
        o = ours[kind][size]
        oc = ours[kind + "_cpu_s_per_token"][size] * 1e3
        t = theirs[kind][size] if theirs else float("nan")
        tc = theirs[kind + "_cpu_s_per_token"][size] * 1e3 if theirs else float("nan")
        label = f"{kind} {size}" if kind == "prefill" else f"decode @{size}"
        print(f"{label:<14} {o:13.1f} {t:16.1f} {o / t if theirs else float('nan'):7.2f} "
              f"{oc:18.3f} {tc:21.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"longkv": ours, "llama.cpp": theirs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
