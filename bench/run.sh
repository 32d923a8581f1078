#!/usr/bin/env bash
# bench/run.sh — rnnc against PyTorch on DESIGN.md's C1–C6 and the MGU row, in
# one run, same machine, same thread count (bench/README.md).
#
#   bash bench/run.sh [--threads N] [--quick] [--out results.json] [--build DIR]
#                     [--configs C1,C2,...] [--steps N] [--rounds N]
#                     [--rnnc-wait POLICY]
#
# Builds rnnc_bench and fma_peak (cmake --build DIR, default build/), measures
# the FMA peak, then for each configuration runs rnnc_bench (a child process)
# and bench/torch_bench.py with /usr/bin/python3 (a fresh process) back to
# back, then C5 in rnnc and oneDNN side by side where oneDNN's headers are
# installed (dnnl_side_by_side), and prints
# one table; every number goes to the JSON file (default
# bench-results.json). --quick: one tiny configuration, a few steps (a smoke
# test, no meaningful timing). --rounds N (default 3): every configuration's
# pair of runs N times over, the configurations in turn, so that each ratio
# is the median of N ratios measured minutes apart (report.py).
#
# Threads: each side gets its fastest settings here. rnnc: OMP_NUM_THREADS=N,
# rnnc_set_threads N, libgomp's default wait policy (rnnc's plan executor has
# its own barrier; --rnnc-wait POLICY sets OMP_WAIT_POLICY). PyTorch: OMP_NUM_THREADS =
# OPENBLAS_NUM_THREADS = N, OMP_WAIT_POLICY=PASSIVE, torch.set_num_threads(N).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=2 quick=0 out=bench-results.json build="$root/build" configs="" steps="" rwait="" rounds=3

usage() { sed -n '4,7p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --configs) configs=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --rnnc-wait) rwait=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown option '$1'" >&2; usage ;;
  esac
done
case "$threads" in ''|*[!0-9]*|0) echo "run.sh: --threads needs a number >= 1" >&2; exit 2 ;; esac
case "$rounds" in ''|*[!0-9]*|0) echo "run.sh: --rounds needs a number >= 1" >&2; exit 2 ;; esac

work="$build/bench-run"
mkdir -p "$work" || exit 1
rm -f "$work"/*.jsonl "$work"/dnnl.json

echo "== building rnnc_bench and fma_peak in $build" >&2
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" >&2 || exit 1
fi
cmake --build "$build" -j2 --target rnnc_bench >&2 || { echo "run.sh: building rnnc_bench failed" >&2; exit 1; }
have_fma=0
cmake --build "$build" -j2 --target fma_peak >&2 && have_fma=1

if [ "$have_fma" = 1 ]; then
  echo "== FMA peak, 1..$threads threads" >&2
  "$build/fma_peak" "$threads" "$([ $quick = 1 ] && echo 2 || echo 5)" | tee "$work/fma.jsonl" >&2
fi

have_torch=0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  have_torch=1
else
  echo "== PyTorch: skipped (/usr/bin/python3 cannot import torch; Debian python3-torch)" >&2
fi
rnnc_rc=0

# rnnc_bench on the configurations $1 (comma-separated), then its arguments
run_rnnc() {
  local list=$1
  shift
  echo "== rnnc $list (OMP_NUM_THREADS=$threads${rwait:+ OMP_WAIT_POLICY=$rwait})" >&2
  if [ -n "$rwait" ]; then
    OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=$rwait "$build/rnnc_bench" --threads "$threads" "$@" | tee -a "$work/rnnc.jsonl" >&2
  else
    OMP_NUM_THREADS=$threads "$build/rnnc_bench" --threads "$threads" "$@" | tee -a "$work/rnnc.jsonl" >&2
  fi
  [ "${PIPESTATUS[0]}" = 0 ] || rnnc_rc=1
}

# torch_bench.py on the configurations $1, then its arguments
run_torch() {
  [ $have_torch = 1 ] || return 0
  local list=$1
  shift
  echo "== PyTorch $list (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE)" >&2
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE \
    /usr/bin/python3 "$here/torch_bench.py" --threads "$threads" "$@" | tee -a "$work/torch.jsonl" >&2
  [ "${PIPESTATUS[0]}" = 0 ] || echo "run.sh: torch_bench.py failed on $list (its message above)" >&2
}

if [ $quick = 1 ]; then
  run_rnnc quick --quick
  run_torch quick --configs quick --steps 3 --warmup 1 --min-time 0 --gen-steps 20
else
  # One configuration at a time, rnnc's and PyTorch's runs back to back (the
  # first of the two alternating from one configuration to the next): on this
  # shared machine the minutes differ by more than the ratios' precision, so
  # the two sides of a ratio run in the same minute. C2's compile times at
  # T = 1, 64 and 1024 (rnnc only) go with C2, in the first round.
  i=0
  for round in $(seq "$rounds"); do
    [ "$rounds" -gt 1 ] && echo "== round $round of $rounds" >&2
    for k in $(echo "${configs:-C1,C2,C3,MGU,C4,C5,C6}" | tr ',' ' '); do
      rk=$k
      [ "$k" = C2 ] && [ "$round" = 1 ] && [[ ",$configs," != *",C2-compile,"* ]] && rk=C2,C2-compile
      sargs=()
      [ -n "$steps" ] && sargs=(--steps "$steps")
      if [ "$k" = C2-compile ]; then
        [ "$round" = 1 ] && run_rnnc "$k" --configs "$k" "${sargs[@]}"
      elif [ $((i % 2)) = 0 ]; then
        run_rnnc "$rk" --configs "$rk" "${sargs[@]}"
        run_torch "$k" --configs "$k" "${sargs[@]}"
      else
        run_torch "$k" --configs "$k" "${sargs[@]}"
        run_rnnc "$rk" --configs "$rk" "${sargs[@]}"
      fi
      i=$((i + 1))
    done
  done
fi

dnnl_args=() note=""
if [ $quick = 0 ] && { [ -z "$configs" ] || [[ ",$configs," == *",C5,"* ]]; }; then
  # built by cmake only where oneDNN's headers are (Debian libdnnl-dev)
  if cmake --build "$build" -j2 --target dnnl_side_by_side >/dev/null 2>&1; then
    echo "== oneDNN side by side: C5 in rnnc and in oneDNN's fused LSTM primitive, one process, alternating rounds" >&2
    OMP_NUM_THREADS=$threads "$build/dnnl_side_by_side" 20 2 | tee "$work/dnnl.json" >&2
    dnnl_args=(--dnnl "$work/dnnl.json")
  else
    note="oneDNN: skipped (no dnnl_side_by_side: oneDNN's headers, Debian libdnnl-dev, are not installed)"
  fi
fi

echo >&2
python3 "$here/report.py" --threads "$threads" --fma "$work/fma.jsonl" --rnnc "$work/rnnc.jsonl" \
  --torch "$work/torch.jsonl" "${dnnl_args[@]}" --note "$note" --out "$out"
rc=$?
[ "$rnnc_rc" = 0 ] || { echo "run.sh: rnnc_bench failed on some configuration (its error lines above)" >&2; rc=1; }
exit $rc
