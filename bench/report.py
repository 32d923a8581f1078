#!/usr/bin/env python3
"""Merge the outputs of one bench/run.sh run into one table and one JSON file.

Inputs (JSON lines, any may be missing or empty): fma_peak's, rnnc_bench's,
torch_bench.py's, and optionally dnnl_side_by_side's JSON line. With several
rounds (run.sh --rounds), a configuration has one line per round on each
side, in the order they ran: a time is the median over the rounds, a speedup
the median of the rounds' ratios (the k-th runs of the two sides, back to
back, paired).

Usage: report.py --threads N --fma F --rnnc R --torch P [--dnnl D] --out OUT.json
Prints the table (Markdown) on stdout. Columns:
  rnnc / PyTorch ms   median training step (C6: forward of one token)
  speedup             PyTorch time / rnnc time (above 1: rnnc faster)
  tok/s, GFLOP/s      rnnc's; GFLOP/s = matmul FLOPs of a step / median time
                      (bench/README.md gives the formula)
  % peak              rnnc's GFLOP/s / fma_peak's best at the same thread count
  fwd speedup         PyTorch / rnnc, forward only (no gradients)
  compile ms          rnnc_compile_ms of the training net (C6: the T=1 net)
  mem MiB             resident-set growth during the timed runs' peak over the
                      process before the model (run_peak_delta_mib), rnnc / PyTorch
"""
import argparse
import copy
import json
import platform
import sys
import time


def read_lines(path):
    out = []
    if not path:
        return out
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out


def median(v):
    v = sorted(v)
    n = len(v)
    if not n:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def group(lines):
    """config -> its records, in the order they ran (one per round)."""
    g = {}
    for x in lines:
        if "config" in x:
            g.setdefault(x["config"], []).append(x)
    return g


def merge(recs):
    """One record for a configuration's rounds: the first's fields, with each
    mode's time, tokens/s and GFLOP/s, the compile time and the memory the
    medians over the rounds; "rounds" says how many, and each mode's
    "ms_rounds" lists the rounds' times."""
    out = copy.deepcopy(recs[0])
    for mode in ("train", "fwd", "gen"):
        vals = [r[mode] for r in recs if isinstance(r.get(mode), dict) and r[mode].get("ms_median")]
        if not vals:
            continue
        m = out[mode] = dict(vals[0])
        for key in ("ms_median", "us_median", "tokens_per_s", "gflops"):
            xs = [v[key] for v in vals if isinstance(v.get(key), (int, float))]
            if xs:
                m[key] = median(xs)
        m["ms_rounds"] = [v["ms_median"] for v in vals]
    for key in ("compile_ms", "run_peak_delta_mib"):
        xs = [r[key] for r in recs if isinstance(r.get(key), (int, float))]
        if xs:
            out[key] = median(xs)
    out["rounds"] = len(recs)
    return out


def round_ratios(rg, pg, k, mode):
    """PyTorch time / rnnc time in each round of configuration k."""
    rs = [r.get(mode, {}).get("ms_median") for r in rg.get(k, [])]
    ps = [p.get(mode, {}).get("ms_median") for p in pg.get(k, [])]
    return [p / r for r, p in zip(rs, ps) if r and p]


def fmt(x, nd=1):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) < 1:
        return f"{x:.3g}"
    return f"{x:.{nd}f}"


def check_targets(rn, pt, peak, speedup):
    """Issue 3's targets, each {what, value, met}, for the rows that were
    measured; speedup(k, mode) is the median ratio and the rounds' ratios."""
    out = []

    def ms(d, k, mode):
        return d.get(k, {}).get(mode, {}).get("ms_median")

    # training: 3x on C1, 2x on C2-C5; forward only: 2x on C1-C5. With the
    # FLOPs of a step, a ratio is also a fraction of the FMA peak: the one
    # rnnc would have to sustain over the whole step to reach it.
    for k, need_train in [("C1", 3), ("C2", 2), ("C3", 2), ("C4", 2), ("C5", 2)]:
        for mode, label, need in [("train", "training", need_train), ("fwd", "forward-only", 2)]:
            r, p = ms(rn, k, mode), ms(pt, k, mode)
            ratio, each = speedup(k, mode)
            if r and p and ratio:
                value = f"{ratio:.2f}×"
                if len(each) > 1:
                    value += f" (rounds {min(each):.2f}–{max(each):.2f}×)"
                gf = rn.get(k, {}).get(mode, {}).get("gflop_per_step")
                if gf and peak:
                    value += (f" ({need}× needs {100 * need * gf / (p / 1000) / peak:.0f}% of the FMA peak;"
                              f" rnnc ran at {100 * gf / (r / 1000) / peak:.0f}%)")
                out.append(dict(what=f"{k} {label} ≥ {need}× PyTorch", value=value, met=ratio >= need))
    for k in ("C2", "C5"):
        g = rn.get(k, {}).get("train", {}).get("gflops")
        if g and peak:
            out.append(dict(what=f"{k} training ≥ 70% of the FMA peak", value=f"{100 * g / peak:.0f}%",
                            met=g / peak >= 0.70))
    g6 = ms(rn, "C6", "gen")
    if g6:
        out.append(dict(what="C6 ≤ 0.25 ms per token", value=f"{g6:.3f} ms", met=g6 <= 0.25))
    gm = rn.get("MGU", {}).get("train", {}).get("gflops")
    gg = rn.get("C3", {}).get("train", {}).get("gflops")
    if gm and gg:
        out.append(dict(what="MGU within 15% of the GRU in GFLOP/s (training)",
                        value=f"{gm:.1f} vs {gg:.1f} GFLOP/s ({gm / gg:.2f})", met=gm >= 0.85 * gg))
    mr, mp = rn.get("C2", {}).get("run_peak_delta_mib"), pt.get("C2", {}).get("run_peak_delta_mib")
    if mr is not None and mp is not None and mr >= 0:
        out.append(dict(what="C2 training peak memory ≤ PyTorch's", value=f"{mr:.0f} vs {mp:.0f} MiB",
                        met=mr <= mp))
    cc = rn.get("C2-compile", {}).get("compile", [])
    for x in cc:
        if x["T"] in (64, 1024):
            out.append(dict(what=f"C2 JIT compile at T = {x['T']} < 1 s", value=f"{x['compile_ms']:.0f} ms",
                            met=x["compile_ms"] < 1000))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--fma")
    ap.add_argument("--rnnc")
    ap.add_argument("--torch")
    ap.add_argument("--dnnl")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    fma = read_lines(a.fma)
    peak = next((x["gflops_best"] for x in fma if x.get("threads") == a.threads), None)
    rgrp, pgrp = group(read_lines(a.rnnc)), group(read_lines(a.torch))
    rn = {k: merge(v) for k, v in rgrp.items()}
    pt = {k: merge(v) for k, v in pgrp.items()}

    def speedup(k, mode):
        each = round_ratios(rgrp, pgrp, k, mode)
        return median(each), each

    dnnl = None
    if a.dnnl:
        try:
            with open(a.dnnl) as f:
                dnnl = json.load(f)
        except (OSError, json.JSONDecodeError):
            dnnl = None

    order = [k for k in ["quick", "C1", "C2", "C3", "MGU", "C4", "C5", "C6"] if k in rn or k in pt]
    head = ["config", "rnnc ms", "PyTorch ms", "speedup", "rnnc tok/s", "rnnc GFLOP/s", "% peak",
            "rnnc fwd ms", "PyTorch fwd ms", "fwd speedup", "compile ms", "mem MiB rnnc / PyTorch"]
    rows = []
    for k in order:
        r, p = rn.get(k, {}), pt.get(k, {})
        mode = "gen" if k == "C6" else "train"
        rm = r.get(mode, {}).get("ms_median")
        pm = p.get(mode, {}).get("ms_median")
        rg = r.get(mode, {}).get("gflops")
        rf = r.get("fwd", {}).get("ms_median")
        pf = p.get("fwd", {}).get("ms_median")
        label = k + (" (token)" if k == "C6" else "")
        if "error" in r:
            label += " (rnnc: error)"
        rows.append([
            label,
            fmt(rm, 3 if k == "C6" else 1), fmt(pm, 3 if k == "C6" else 1),
            fmt(speedup(k, mode)[0], 2) + "×" if rm and pm else "—",
            fmt(r.get(mode, {}).get("tokens_per_s"), 0),
            fmt(rg),
            f"{100 * rg / peak:.{0 if 100 * rg / peak >= 1 else 1}f}%" if rg and peak else "—",
            fmt(rf), fmt(pf),
            fmt(speedup(k, "fwd")[0], 2) + "×" if rf and pf else "—",
            fmt(r.get("compile_ms")),
            f"{fmt(r.get('run_peak_delta_mib'))} / {fmt(p.get('run_peak_delta_mib'))}",
        ])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    print("\n".join(lines))
    nr = max([len(v) for v in rgrp.values()] + [len(v) for v in pgrp.values()] + [1])
    if nr > 1:
        print(f"\n{nr} rounds: times are medians over the rounds, speedups the medians of the rounds' ratios; "
              "each round's (training or token; forward):")
        for k in order:
            mode = "gen" if k == "C6" else "train"
            each, fwd = round_ratios(rgrp, pgrp, k, mode), round_ratios(rgrp, pgrp, k, "fwd")
            if each:
                print(f"- {k}: " + " ".join(f"{x:.2f}×" for x in each) +
                      ("; " + " ".join(f"{x:.2f}×" for x in fwd) if fwd else ""))
    cc = rn.get("C2-compile")
    if cc and "compile" in cc:
        print("\nC2 JIT compile (RNNC_GRAD), rnnc_compile_ms: " +
              ", ".join(f"T = {x['T']}: {x['compile_ms']:.0f} ms" for x in cc["compile"]))
    for k, r in rn.items():
        if "error" in r:
            print(f"\nrnnc {k}: {r['error']}")
    targets = check_targets(rn, pt, peak, speedup)
    if targets:
        print("\nIssue 3's targets (2 threads on the 2-core development machine):")
        for t in targets:
            print(f"- {t['what']}: {t['value']} — {'met' if t['met'] else 'NOT met'}")
    if peak:
        print(f"\nFMA peak, {a.threads} thread(s): {peak:.1f} GFLOP/s (fma_peak, best of its runs)")
        one = next((x["gflops_best"] for x in fma if x.get("threads") == 1), None)
        if one and a.threads > 1 and peak < 0.8 * a.threads * one:
            print(f"WARNING: the {a.threads}-thread FMA peak is only {peak / one:.2f}× the 1-thread one "
                  f"({one:.1f}): other processes had the cores during this run, so its times, ratios "
                  f"and % of peak are unreliable")
    if dnnl and "train" in dnnl:
        # dnnl_side_by_side: the same forward + backward (no clipping, no
        # update) on both sides, rounds alternating in one process
        print(f"\noneDNN {dnnl.get('dnnl_version')} C5 LSTM, side by side with rnnc in one process "
              f"({dnnl.get('rounds')} alternating rounds; ratio = oneDNN time / rnnc time in a round):")
        for key, what in (("train", "forward + backward"), ("infer", "forward only")):
            x = dnnl.get(key)
            if not x:
                continue
            r = x["ratio_median"]
            line = (f"- {what}: rnnc {x['rnnc_ms_median']:.1f} ms, oneDNN {x['dnnl_ms_median']:.1f} ms (medians); "
                    f"ratio {r:.3f} (p25 {x['ratio_p25']:.3f}, p75 {x['ratio_p75']:.3f})")
            if key == "train":
                line += f" — {'met' if r >= 1 else 'NOT met'}: at least as fast"
            print(line)
    elif a.dnnl is not None:
        print("oneDNN: skipped (see the note above)")
    if a.note:
        print(a.note)
    ratios = {k: {m: round_ratios(rgrp, pgrp, k, m) for m in ("train", "fwd", "gen") if round_ratios(rgrp, pgrp, k, m)}
              for k in order}
    doc = dict(targets=targets, date_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), host=platform.node(),
               threads=a.threads, fma_peak=fma, rnnc=list(rn.values()), pytorch=list(pt.values()), speedups=ratios,
               dnnl=dnnl, table=dict(head=head, rows=rows))
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"\nall results: {a.out}")


if __name__ == "__main__":
    sys.exit(main())
