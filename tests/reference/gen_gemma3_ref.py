#!/usr/bin/env python3
"""gen_gemma3_ref.py -- reference logits from llama.cpp for tests/test_model_gemma3.c.

Runs Gemma-3-270M (models/gemma-3-270m-Q4_K_M.gguf) in llama.cpp through
llama-cpp-python (one batched evaluation, logits_all, flash attention, f16 KV)
over the two texts of the test, and prints C initializers: the token ids and,
at chosen positions, the 5 highest logits (id, value) and llama.cpp's greedy
continuation of the short prompt.

Usage: /tmp/lcpp-venv/bin/python tests/reference/gen_gemma3_ref.py [model]
"""
import os
import sys

import numpy as np
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "gemma-3-270m-Q4_K_M.gguf")

SHORT = "The capital of France is"
# The opening of Pride and Prejudice, repeated past the 512-token window.
PARA = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife. However little known the feelings or views of "
        "such a man may be on his first entering a neighbourhood, this truth is so well fixed "
        "in the minds of the surrounding families, that he is considered as the rightful "
        "property of some one or other of their daughters.\n\n")
LONG_REPS = 8


def top5(row):
    ids = np.argsort(-row)[:5]
    return [(int(i), float(row[i])) for i in ids]


def main():
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=1024, n_batch=512, logits_all=True,
                          flash_attn=True, n_threads=2, verbose=False)
    # short prompt: greedy continuation, teacher-forced logits at every position
    toks = llm.tokenize(SHORT.encode(), add_bos=True, special=False)
    gen = []
    llm.eval(toks)
    for _ in range(8):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        gen.append(t)
        llm.eval([t])
    allt = toks + gen
    sc = np.asarray(llm.scores[: len(allt)], dtype=np.float64)
    print("prompt ids:", toks)
    print("greedy:", gen, repr(llm.detokenize(gen).decode(errors="replace")))
    for p in range(len(toks) - 1, len(allt) - 1):
        row = sc[p]
        o = np.sort(row)[::-1]
        print("  pos %d: top5 %s gap %.3f" % (p, top5(row), o[0] - o[1]))
    llm.reset()
    # long text
    toks = llm.tokenize((PARA * LONG_REPS).encode(), add_bos=True, special=False)
    llm.eval(toks)
    sc = np.asarray(llm.scores[: len(toks)], dtype=np.float64)
    print("long: %d tokens, paragraph %d tokens" % (len(toks), len(llm.tokenize(PARA.encode(), add_bos=False))))
    for p in (100, 511, 512, 600, len(toks) - 1):
        if p < len(toks):
            row = sc[p]
            o = np.sort(row)[::-1]
            print("  pos %d: top5 %s gap %.3f" % (p, top5(row), o[0] - o[1]))


if __name__ == "__main__":
    main()
