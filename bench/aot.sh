#!/usr/bin/env bash
# bench/aot.sh — a model compiled ahead of time against the JIT: C2's training
# step and C6's generation step (bench/README.md, "Ahead of time vs JIT").
#
#   bash bench/aot.sh [--threads N] [--rounds R] [--optim sgd|adam] [--build DIR]
#                     [--no-build] [--quick]
#
# For each configuration: `rnnc compile` (timed) the model into an object for
# this CPU (--cpu native, the JIT's code), `cc -shared` it (size(1) gives its
# text + data), then aot_bench dlopens it and runs it against the JIT in the
# same process, on the same parameters and inputs: it checks both give
# bitwise the same results, then times them in alternating rounds (medians).
#   C2: bench/models/c2_charlm_medium.rnn --train --batch 64 --seq 64 (V=256
#       E=128 H=512, two LSTM layers): the whole training step (forward,
#       backward, clip by global norm 5, SGD lr 0.01 — or --optim adam at
#       lr 1e-3), rnnc_aot_train_step against rnnc_train_step;
#   C6: bench/models/c6_generate.rnn, the step program at B = 1 (--step-batch
#       1: C2's network, one token, states carried), rnnc_aot_run against
#       rnnc_forward of a T = 1, B = 1 RNNC_CARRY net (rnnc_bench's C6).
# Threads: N (default 2) on both sides, OMP_NUM_THREADS=N. --rounds R:
# aot_bench's rounds (default C2 10 rounds of 1 step, C6 20 of 200 tokens).
# --quick: the same two programs on a tiny model (E = 8, H = 16, B = 4,
# T = 8), 2 short rounds: a smoke test of the chain (the ctest
# aot_bench_quick), not a measurement. Prints a Markdown table; the JSON lines
# and objects are in DIR/bench-aot/ (DIR default build/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=2 rounds="" optim=sgd build="$root/build" nobuild=0 quick=0

usage() { sed -n '5,6p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --optim) optim=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --no-build) nobuild=1; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) usage ;;
    *) echo "aot.sh: unknown option '$1'" >&2; usage ;;
  esac
done
case "$threads" in ''|*[!0-9]*|0) echo "aot.sh: --threads needs a number >= 1" >&2; exit 2 ;; esac
case "$rounds" in ''|*[!0-9]*|0) [ -z "$rounds" ] || { echo "aot.sh: --rounds needs a number >= 1" >&2; exit 2; } ;; esac
case "$optim" in sgd|adam) ;; *) echo "aot.sh: --optim is sgd or adam" >&2; exit 2 ;; esac

if [ $nobuild = 0 ]; then
  echo "== building rnnc and aot_bench in $build" >&2
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >&2 || exit 1
  fi
  cmake --build "$build" -j2 --target rnnc aot_bench >&2 || { echo "aot.sh: building failed" >&2; exit 1; }
fi
for x in "$build/rnnc" "$build/aot_bench"; do
  [ -x "$x" ] || { echo "aot.sh: no $x (build it, or drop --no-build)" >&2; exit 1; }
done

work="$build/bench-aot$([ $quick = 1 ] && echo -quick)"
mkdir -p "$work" || exit 1
rm -f "$work"/*.json "$work"/*.o "$work"/*.so "$work"/*.h

models="$root/bench/models"
if [ $quick = 1 ]; then
  dims=(--dim E=8 --dim H=16)
  c2size=(--batch 4 --seq 8) c6size=(--batch 1 --seq 1)
  c2run=(--rounds 2 --warmup 1) c6run=(--rounds 2 --block 3 --warmup 1)
  c2label=quick-train c6label=quick-step
else
  dims=()
  c2size=(--batch 64 --seq 64) c6size=(--batch 1 --seq 1)
  c2run=() c6run=()
  [ -n "$rounds" ] && c2run=(--rounds "$rounds") && c6run=(--rounds "$rounds")
  c2label=C2 c6label=C6
fi

# one configuration: label prefix model what [rnnc compile args] -- [aot_bench args]
run_one() {
  local label=$1 prefix=$2 model=$3 what=$4; shift 4
  local cargs=() bargs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do cargs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  bargs=("$@")
  echo "== $label: rnnc compile $(basename "$model") ${cargs[*]} --prefix $prefix" >&2
  local t0 t1
  t0=$(date +%s.%N)
  "$build/rnnc" compile "$model" "${cargs[@]}" "${dims[@]}" --prefix "$prefix" -o "$work/$prefix.o" \
    --header "$work/$prefix.h" >&2 || { echo "aot.sh: rnnc compile failed ($label)" >&2; return 1; }
  t1=$(date +%s.%N)
  cc -shared -o "$work/$prefix.so" "$work/$prefix.o" -lsleef -lm -fopenmp >&2 ||
    { echo "aot.sh: cc -shared failed ($label)" >&2; return 1; }
  local textdata
  textdata=$(size "$work/$prefix.o" | awk 'NR == 2 { print $1 + $2 }')
  echo "== $label: aot_bench (OMP_NUM_THREADS=$threads)" >&2
  OMP_NUM_THREADS=$threads "$build/aot_bench" --model "$model" --object "$work/$prefix.so" --prefix "$prefix" \
    --what "$what" --label "$label" --threads "$threads" "${dims[@]}" "${bargs[@]}" > "$work/$prefix.run.json"
  local rc=$?
  cat "$work/$prefix.run.json" >&2
  [ $rc = 0 ] || { echo "aot.sh: aot_bench failed ($label)" >&2; return 1; }
  printf '{"aot_compile_s": %s, "object_bytes": %s, "object_text_data": %s}\n' \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$(stat -c %s "$work/$prefix.o")" "$textdata" \
    > "$work/$prefix.obj.json"
}

failed=0
run_one "$c2label" c2 "$models/c2_charlm_medium.rnn" train --train "${c2size[@]}" --no-step \
  -- --optim "$optim" "${c2run[@]}" || failed=1
run_one "$c6label" c6 "$models/c6_generate.rnn" step "${c6size[@]}" --step-batch 1 \
  -- "${c6run[@]}" || failed=1
[ $failed = 0 ] || exit 1

/usr/bin/python3 - "$work" <<'EOF' || exit 1
import json, os, sys
work = sys.argv[1]
print("| config | timed | JIT median | AOT median | AOT / JIT | per-round AOT / JIT (median) | JIT min | AOT min "
      "| JIT compile (rnnc_compile_ms) | rnnc compile (wall) | object text + data |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in ("c2", "c6"):
    r = json.load(open(os.path.join(work, p + ".run.json")))
    o = json.load(open(os.path.join(work, p + ".obj.json")))
    u = "ms" if r["what"] == "train" else "us"
    unit = "ms" if u == "ms" else "µs"
    timed = ("training step, B=%d T=%d, %s" % (r["B"], r["T"], r["optim"].upper()) if r["what"] == "train"
             else "one token, B=%d" % r["B"])
    print("| %s | %s | %.4g %s | %.4g %s | %.3f | %.3f | %.4g %s | %.4g %s | %.0f ms | %.2f s | %.1f KiB |" % (
        r["config"], timed, r["jit"][u + "_median"], unit, r["aot"][u + "_median"], unit, r["ratio_aot_jit"],
        r["ratio_rounds_median"], r["jit"][u + "_min"], unit, r["aot"][u + "_min"], unit, r["jit_compile_ms"],
        o["aot_compile_s"], o["object_text_data"] / 1024))
EOF
echo "aot.sh: 2 configurations validated (bitwise) and timed, $threads threads"
