#!/usr/bin/env python3
"""compare_llamacpp.py -- longkv against an independent engine (llama.cpp).

Optional, slower test tier (not in the default CTest run): needs llama-cpp-python,
which builds llama.cpp from source.

Over a passage of real text (default: the first 1000 tokens of the GPL-3 text
shipped by Debian), both engines score every next token:
  * llama.cpp through llama-cpp-python: one batched evaluation, logits_all=True,
    flash attention, f16 KV cache;
  * longkv: `longkv perplexity --dump`, i.e. a first chunk prefilled, then one
    token at a time through the paged cache.
The text handed to longkv is llama.cpp's own detokenization of its tokens, and
the token ids in longkv's dump are checked against llama.cpp's (so the tokenizer
is compared too). Reported: next-token argmax agreement (also where llama.cpp's
top-1 leads by more than 1 logit), perplexity of each and their relative
difference, mean |delta log p|. Targets (issue 4): agreement >= 99 %, perplexity
within 1 %.

Usage:
  /tmp/lcpp-venv/bin/python tests/reference/compare_llamacpp.py \
      [--longkv build/longkv] [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] \
      [--text /usr/share/common-licenses/GPL-3] [--tokens 1000] [--threads 2] \
      [--json out.json]
Exit status: 0 when both targets are met, 1 when not, 2 on errors.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_longkv():
    for d in ("build-model", "build", "build-release"):
        p = os.path.join(ROOT, d, "longkv")
        if os.access(p, os.X_OK):
            return p
    return None


def llamacpp_scores(model, tokens_text, n_tokens, threads):
    import numpy as np
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model, n_ctx=n_tokens + 16, n_batch=512,
                          logits_all=True, flash_attn=True, n_threads=threads,
                          verbose=False)
    toks = llm.tokenize(tokens_text.encode("utf-8"), add_bos=True, special=False)[:n_tokens]
    llm.eval(toks)
    logits = np.asarray(llm.scores[: len(toks)], dtype=np.float64)
    rows = []
    for i in range(1, len(toks)):
        row = logits[i - 1]
        m = row.max()
        lse = m + math.log(np.exp(row - m).sum())
        order = np.argpartition(-row, 2)[:2]
        top = order[np.argmax(row[order])]
        second = row[order].min()
        rows.append((i, toks[i], int(top), float(row[toks[i]] - lse), float(row[top] - second)))
    text = llm.detokenize(toks).decode("utf-8", errors="replace")
    return toks, rows, text


def longkv_scores(longkv, model, text, n_tokens, threads, batch):
    with tempfile.TemporaryDirectory() as td:
        tf = os.path.join(td, "text.txt")
        df = os.path.join(td, "dump.txt")
        with open(tf, "w", encoding="utf-8") as f:
            f.write(text)
        cmd = [longkv, "perplexity", "-m", model, "-f", tf, "-c", str(n_tokens + 8),
               "-t", str(threads), "-b", str(batch), "--max-tokens", str(n_tokens),
               "--dump", df]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(2)
        rows = []
        with open(df) as f:
            for line in f:
                i, t, a, lp = line.split()
                rows.append((int(i), int(t), int(a), float(lp)))
        return rows, r.stdout.strip(), r.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longkv", default=find_longkv())
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="longkv's first prefill chunk")
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    if not a.longkv or not os.access(a.longkv, os.X_OK):
        print("compare_llamacpp: longkv binary not found (--longkv)", file=sys.stderr)
        return 2
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("compare_llamacpp: skipped (llama-cpp-python is not installed)")
        return 0
    with open(a.text, encoding="utf-8", errors="replace") as f:
        text = f.read()

    toks, ref, ref_text = llamacpp_scores(a.model, text, a.tokens, a.threads)
    ours, out, err = longkv_scores(a.longkv, a.model, ref_text, len(toks), a.threads, a.batch)

    n = min(len(ref), len(ours))
    tok_mismatch = sum(1 for k in range(n) if ref[k][1] != ours[k][1])
    if tok_mismatch or len(ref) != len(ours):
        first = next((k for k in range(n) if ref[k][1] != ours[k][1]), n)
        print(f"tokenizer: {tok_mismatch} of {n} ids differ (first at index {first + 1}); "
              f"lengths {len(ref) + 1} vs {len(ours) + 1}; comparing the common prefix")
        n = first
    agree = sum(1 for k in range(n) if ref[k][2] == ours[k][2])
    clear = [k for k in range(n) if ref[k][4] > 1.0]
    agree_clear = sum(1 for k in clear if ref[k][2] == ours[k][2])
    nll_ref = -sum(ref[k][3] for k in range(n)) / n
    nll_our = -sum(ours[k][3] for k in range(n)) / n
    ppl_ref, ppl_our = math.exp(nll_ref), math.exp(nll_our)
    dlp = sum(abs(ref[k][3] - ours[k][3]) for k in range(n)) / n
    res = {
        "tokens": len(toks), "scored": n, "tokenizer_mismatches": tok_mismatch,
        "argmax_agreement": agree / n,
        "argmax_agreement_margin_gt_1": agree_clear / max(1, len(clear)),
        "positions_margin_gt_1": len(clear),
        "ppl_llamacpp": ppl_ref, "ppl_longkv": ppl_our,
        "ppl_rel_diff": abs(ppl_our - ppl_ref) / ppl_ref,
        "mean_abs_dlogp": dlp,
        "longkv": out, "longkv_speed": err.splitlines()[-1] if err else "",
    }
    print(f"text: {a.text}, {len(toks)} tokens ({n} scored), model {os.path.basename(a.model)}")
    print(f"tokenizer ids identical: {'yes' if tok_mismatch == 0 else 'NO'}")
    print(f"next-token argmax agreement: {100 * res['argmax_agreement']:.2f} %  "
          f"({agree}/{n}); where llama.cpp's top-1 leads by > 1 logit: "
          f"{100 * res['argmax_agreement_margin_gt_1']:.2f} % ({agree_clear}/{len(clear)})")
    print(f"perplexity: llama.cpp {ppl_ref:.4f}, longkv {ppl_our:.4f}, "
          f"difference {100 * res['ppl_rel_diff']:.3f} %")
    print(f"mean |delta log p(next)|: {dlp:.4f} nats")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    ok = res["argmax_agreement"] >= 0.99 and res["ppl_rel_diff"] < 0.01
    print("targets (agreement >= 99 %, perplexity within 1 %):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
