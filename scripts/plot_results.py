#!/usr/bin/env python3
"""plot_results.py -- plots of longkv eval results (JSON lines) as PNG and SVG.

    python3 scripts/plot_results.py RESULTS.jsonl [MORE.jsonl ...] -o OUT_DIR
    python3 scripts/plot_results.py --synthetic demo.jsonl   # fake rows, to try the plots

Input: the rows `longkv eval` writes (one JSON object per line) with the keys
task, model, press, ratio, ctx, score, kv_bytes, peak_rss, prefill_tps,
decode_tps, seed and extras such as depth and pos_end. null means unknown.

Plots (each written as OUT_DIR/NAME.png and OUT_DIR/NAME.svg, only when the
results hold the rows it needs):
  score_vs_ratio     task score vs compression ratio, one line per press, the
                     full-cache baseline (press "full") as a dashed line; one
                     panel per (model, task, ctx), mean over depths and seeds
                     (kvpress-style)
  heatmap_<task>     score over needle depth (rows) x context length (columns),
                     one panel per (model, press, ratio) -- rows with a depth
  ppl_vs_position    perplexity per position bucket (task "ppl": score is the
                     bucket's perplexity, pos_end its last position), one line
                     per (press, ratio), log scale
  kv_bytes_vs_ctx    KV bytes held vs context length, one line per (press, ratio)

Rows marked "synthetic": true (what --synthetic writes) put a SYNTHETIC DATA
stamp on every plot that uses them, so a demo is never mistaken for a result.
"""
import argparse
import json
import math
import os
import random
import sys
from collections import defaultdict


def load_rows(paths):
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON: {e}")
                if not isinstance(row, dict):
                    sys.exit(f"{path}:{n}: not a JSON object")
                rows.append(row)
    return rows


def num(v):
    """A finite float, or None for null / missing / non-numeric."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def is_full(row):
    return str(row.get("press") or "full") in ("full", "none")


# Parameters that set how much is compressed: they vary along the x axis of a
# policy's line rather than making a new policy.
AMOUNT_PARAMS = {"ratio", "budget", "compression_ratio", "keep", "page_budget"}


def policy_key(row):
    """The policy without its amount: "snapkv:ratio=0.5,window=32" -> "snapkv:window=32".
    A row's own "policy" field wins."""
    if isinstance(row.get("policy"), str) and row["policy"]:
        return row["policy"]
    if is_full(row):
        return "full"
    parts = []
    for part in str(row.get("press")).split("+"):
        name, _, params = part.partition(":")
        kept = [kv for kv in params.split(",") if kv and kv.split("=")[0] not in AMOUNT_PARAMS]
        parts.append(name + (":" + ",".join(kept) if kept else ""))
    return "+".join(parts)


def ratio_of(row):
    return 0.0 if is_full(row) else num(row.get("ratio"))


def ctx_label(c):
    c = int(c)
    return f"{c // 1024}k" if c >= 1024 and c % 1024 == 0 else str(c)


def stamp(fig, rows, title):
    synthetic = any(r.get("synthetic") is True for r in rows)
    if synthetic:
        fig.text(0.5, 0.5, "SYNTHETIC DATA", fontsize=44, color="red", alpha=0.15,
                 ha="center", va="center", rotation=25, weight="bold")
        title += "\n[synthetic demo data, not a measurement]"
    fig.suptitle(title, color="red" if synthetic else "black")


def save(fig, out_dir, name, written):
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)


def grid(plt, n, w=4.2, h=3.2, cols=3):
    cols = min(n, cols)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False,
                             layout="constrained")
    flat = [a for r in axes for a in r]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def shared_legend(fig, axes):
    """One legend for all panels, right of them (labels in first-seen order)."""
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside right center",
                   fontsize=8, frameon=False)


def line_styles(labels, plt):
    """A fixed colour per label; the full cache is black and dashed."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out, i = {}, 0
    for lab in labels:
        if lab == "full":
            out[lab] = dict(color="black", linestyle="--")
        else:
            out[lab] = dict(color=colors[i % len(colors)], linestyle="-")
            i += 1
    return out


# ---------------------------------------------------------------- plots

def plot_score_vs_ratio(plt, rows, out_dir, written):
    rows = [r for r in rows if r.get("task") not in ("ppl", "fidelity", "agreement")
            and num(r.get("score")) is not None and ratio_of(r) is not None]
    panels = defaultdict(list)
    for r in rows:
        panels[(str(r.get("model")), str(r.get("task")), num(r.get("ctx")) or 0)].append(r)
    if not panels:
        return
    keys = sorted(panels)
    policies = sorted({policy_key(r) for r in rows}, key=lambda p: (p != "full", p))
    style = line_styles(policies, plt)
    fig, axes = grid(plt, len(keys))
    for ax, key in zip(axes, keys):
        pr = panels[key]
        base = [num(r["score"]) for r in pr if is_full(r)]
        lines = defaultdict(lambda: defaultdict(list))
        for r in pr:
            if not is_full(r):
                lines[policy_key(r)][ratio_of(r)].append(num(r["score"]))
        for pol in policies:
            if pol in lines:
                xs = sorted(lines[pol])
                ax.plot(xs, [mean(lines[pol][x]) for x in xs], marker="o", markersize=4,
                        label=pol, **style[pol])
        if base:
            ax.axhline(mean(base), label="full", linewidth=1.2, **style["full"])
        model, task, ctx = key
        ax.set_title(f"{task}, ctx {ctx_label(ctx)} ({model})", fontsize=9)
        ax.set_xlabel("compression ratio (fraction of KV removed)", fontsize=8)
        ax.set_ylabel("score (mean)", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(-0.02, 1.0)
        ax.grid(alpha=0.3)
    shared_legend(fig, axes)
    stamp(fig, rows, "Score vs. compression ratio (dashed: full cache)")
    save(fig, out_dir, "score_vs_ratio", written)
    plt.close(fig)


def plot_heatmaps(plt, rows, out_dir, written, max_policies=8, max_ratios=8):
    rows = [r for r in rows if num(r.get("depth")) is not None
            and num(r.get("score")) is not None and num(r.get("ctx")) is not None
            and ratio_of(r) is not None]
    figs = defaultdict(list)
    for r in rows:
        figs[(str(r.get("task")), str(r.get("model")))].append(r)
    for (task, model), tr in sorted(figs.items()):
        policies = sorted({policy_key(r) for r in tr}, key=lambda p: (p != "full", p))
        ratios = sorted({ratio_of(r) for r in tr if not is_full(r)})
        if len(policies) > max_policies or len(ratios) > max_ratios:
            print(f"plot_results: heatmap of {task}: showing {max_policies} policies x "
                  f"{max_ratios} ratios of {len(policies)} x {len(ratios)}", file=sys.stderr)
            policies, ratios = policies[:max_policies], ratios[:max_ratios]
        depths = sorted({num(r["depth"]) for r in tr})
        ctxs = sorted({int(num(r["ctx"])) for r in tr})
        cells = defaultdict(list)
        for r in tr:
            cells[(policy_key(r), ratio_of(r), num(r["depth"]), int(num(r["ctx"])))].append(
                num(r["score"]))
        ncols, nrows = max(1, len(ratios)), len(policies)
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 + 2.3 * ncols, 0.8 + 2.1 * nrows),
                                 squeeze=False, layout="constrained")
        image, used = None, []
        for i, pol in enumerate(policies):
            for j in range(ncols):
                ax = axes[i][j]
                if pol == "full":
                    if j > 0:
                        ax.set_visible(False)
                        continue
                    ratio, title = 0.0, "full cache"
                else:
                    if not ratios:
                        ax.set_visible(False)
                        continue
                    ratio = ratios[j]
                    title = f"{pol} @ {ratio:g}"
                vals = [[mean(cells[(pol, ratio, d, c)]) if cells[(pol, ratio, d, c)]
                         else float("nan") for c in ctxs] for d in depths]
                image = ax.imshow(vals, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
                used.append(ax)
                ax.set_title(title, fontsize=8)
                ax.set_xticks(range(len(ctxs)))
                ax.set_xticklabels([ctx_label(c) for c in ctxs], fontsize=7)
                ax.set_yticks(range(len(depths)))
                ax.set_yticklabels([f"{d:g}%" for d in depths], fontsize=7)
                if len(depths) * len(ctxs) <= 64:
                    for y, row_vals in enumerate(vals):
                        for x, v in enumerate(row_vals):
                            if not math.isnan(v):
                                ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=6)
                if j == 0:
                    ax.set_ylabel("needle depth", fontsize=8)
                if i == nrows - 1 or pol == "full" and nrows == 1:
                    ax.set_xlabel("context (tokens)", fontsize=8)
        if image is not None:
            fig.colorbar(image, ax=used, shrink=0.6, label="score (mean)")
        stamp(fig, tr, f"{task}: score by needle depth x context length ({model})")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{task}")
        save(fig, out_dir, f"heatmap_{safe}" if len(figs) == len({k[0] for k in figs})
             else f"heatmap_{safe}_{model}", written)
        plt.close(fig)


def plot_ppl(plt, rows, out_dir, written):
    rows = [r for r in rows if r.get("task") == "ppl" and num(r.get("score")) is not None
            and num(r.get("pos_end", r.get("pos"))) is not None]
    if not rows:
        return
    panels = defaultdict(list)
    for r in rows:
        panels[(str(r.get("model")), num(r.get("ctx")) or 0)].append(r)
    keys = sorted(panels)

    def label(r):
        return "full" if is_full(r) else f"{policy_key(r)} @ {ratio_of(r) or 0:g}"

    from matplotlib.ticker import FuncFormatter
    labels = sorted({label(r) for r in rows}, key=lambda s: (s != "full", s))
    style = line_styles(labels, plt)
    fig, axes = grid(plt, len(keys), w=6.0, h=3.8, cols=2)
    for ax, key in zip(axes, keys):
        lines = defaultdict(lambda: defaultdict(list))
        for r in panels[key]:
            lines[label(r)][num(r.get("pos_end", r.get("pos")))].append(num(r["score"]))
        for lab in labels:
            if lab in lines:
                xs = sorted(lines[lab])
                ax.plot(xs, [mean(lines[lab][x]) for x in xs], marker=".", label=lab,
                        **style[lab])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("position in the text (tokens, bucket end)", fontsize=8)
        ax.set_ylabel("perplexity (log scale)", fontsize=8)
        ax.set_title(f"{key[0]}, {int(key[1])} tokens", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    shared_legend(fig, axes)
    stamp(fig, rows, "Perplexity vs. position")
    save(fig, out_dir, "ppl_vs_position", written)
    plt.close(fig)


def plot_kv_bytes(plt, rows, out_dir, written):
    rows = [r for r in rows if num(r.get("kv_bytes")) is not None
            and num(r.get("ctx")) is not None and ratio_of(r) is not None]
    if not rows:
        return
    from matplotlib.ticker import FuncFormatter, NullFormatter
    panels = defaultdict(list)  # one panel per (model, ratio); the baseline in each
    for r in rows:
        if not is_full(r):
            panels[(str(r.get("model")), ratio_of(r))].append(r)
    base = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if is_full(r):
            base[str(r.get("model"))][int(num(r["ctx"]))].append(num(r["kv_bytes"]) / 2**20)
    keys = sorted(panels) or [(m, 0.0) for m in sorted(base)]
    policies = sorted({policy_key(r) for r in rows}, key=lambda p: (p != "full", p))
    style = line_styles(policies, plt)
    fig, axes = grid(plt, len(keys), w=4.2, h=3.4)
    for ax, (model, ratio) in zip(axes, keys):
        lines = defaultdict(lambda: defaultdict(list))
        for r in panels.get((model, ratio), []):
            lines[policy_key(r)][int(num(r["ctx"]))].append(num(r["kv_bytes"]) / 2**20)
        if base[model]:
            lines["full"] = base[model]
        for pol in policies:
            if pol in lines:
                xs = sorted(lines[pol])
                ax.plot(xs, [mean(lines[pol][x]) for x in xs], marker="o", markersize=4,
                        label=pol, **style[pol])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: ctx_label(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("context length (tokens)", fontsize=8)
        ax.set_ylabel("KV bytes held (MiB)", fontsize=8)
        ax.set_title(f"ratio {ratio:g} ({model})" if panels else model, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    shared_legend(fig, axes)
    stamp(fig, rows, "KV cache bytes held vs. context length (measured from the pool)")
    save(fig, out_dir, "kv_bytes_vs_ctx", written)
    plt.close(fig)


# ---------------------------------------------------------------- synthetic rows

def write_synthetic(path, seed=1):
    """Plausible-looking fake rows, every one marked synthetic, to try the plots."""
    rng = random.Random(seed)
    model = "synthetic-model"
    presses = {"full": 1.0, "snapkv": 0.9, "streamingllm": 0.45, "random": 0.3, "knorm": 0.7}
    bytes_per_token = 30 * 3 * 64 * 2 * 2  # layers x kv heads x dim x (K,V) x f16
    rows = []

    def trials(p, n=20):
        return sum(rng.random() < p for _ in range(n)) / n

    def row(task, press, ratio, ctx, score, **extra):
        kv = int(bytes_per_token * ctx * (1 - ratio))
        r = dict(task=task, model=model, press=press, ratio=ratio, ctx=ctx, score=score,
                 kv_bytes=kv, peak_rss=200 * 2**20 + kv, prefill_tps=rng.uniform(300, 500),
                 decode_tps=rng.uniform(20, 40), seed=seed, synthetic=True)
        r.update(extra)
        rows.append(r)

    for task in ("passkey", "niah_single"):
        for ctx in (1024, 2048, 4096, 8192):
            for depth in (0, 25, 50, 75, 100):
                row(task, "full", 0.0, ctx, trials(0.97), depth=depth, samples=20)
                for press, strength in presses.items():
                    if press == "full":
                        continue
                    for ratio in (0.25, 0.5, 0.75, 0.875):
                        p = strength ** (ratio * 4) * (1 - 0.2 * depth / 100 * ratio)
                        if press == "streamingllm" and 0 < depth < 90:
                            p *= 1 - ratio
                        row(task, f"{press}:ratio={ratio}", ratio, ctx, trials(p),
                            depth=depth, samples=20)
    for press, growth in (("full", 0.0), ("kivi:bits=4", 0.01), ("kivi:bits=2", 0.06),
                          ("streamingllm:sinks=0", 2.0), ("streamingllm:sinks=4", 0.04)):
        ratio = 0.0 if press == "full" else 0.5
        for pos in range(512, 8193, 512):
            base = 18.0 * (pos / 512) ** -0.12
            bump = 1 + growth * (pos > 1024) * (1 if "sinks=0" not in press else pos / 1024)
            row("ppl", press, ratio, 8192, base * bump, pos_start=pos - 512, pos_end=pos)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"plot_results: wrote {len(rows)} synthetic rows to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="*", help="JSON-lines result files")
    ap.add_argument("-o", "--out", default="out/plots", help="output directory")
    ap.add_argument("--synthetic", metavar="PATH",
                    help="write synthetic demo rows to PATH (then plot them if no results given)")
    args = ap.parse_args()
    if args.synthetic:
        write_synthetic(args.synthetic)
        if not args.results:
            args.results = [args.synthetic]
    if not args.results:
        ap.error("no results file")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_results: matplotlib is missing (python3 -m pip install matplotlib, "
                 "or run scripts/setup.sh)")
    rows = load_rows(args.results)
    os.makedirs(args.out, exist_ok=True)
    written = []
    plot_score_vs_ratio(plt, rows, args.out, written)
    plot_heatmaps(plt, rows, args.out, written)
    plot_ppl(plt, rows, args.out, written)
    plot_kv_bytes(plt, rows, args.out, written)
    if not written:
        print("plot_results: no plottable rows", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
