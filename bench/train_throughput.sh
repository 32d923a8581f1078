#!/usr/bin/env bash
# bench/train_throughput.sh — training throughput of `rnnc train` on C2 against
# the bare training step of rnnc_bench's C2, in the same run (bench/README.md,
# "Training throughput").
#
#   bash bench/train_throughput.sh [--threads N] [--steps N] [--bench-steps N]
#                                  [--rounds R] [--build DIR] [--no-build] [--perf]
#
# rnnc train: examples/charlm.rnn with --dim E=128 --dim H=512 at byte level
# (V = 256: C2's sizes) on Debian's fortunes (the corpus tools/main_job.sh
# builds), B=64 T=64, SGD lr 0.01, clip by global norm 5, --steps N (default
# 40), no validation (--valid-frac 0), a metrics line per step (--log-every
# 1), N threads (default 2). Its step time is the difference of consecutive
# metrics lines' time_s (one iteration of its loop: the next batch, feeding
# it, the compiled forward, backward, clip and update, the progress line and
# the metrics line); the first 2 steps are warm-up, as in rnnc_bench.
# Bare step: rnnc_bench --configs C2 (forward_backward on one fixed batch plus
# a plain-C clip and SGD; bench/README.md), --steps N (default 20).
# Each round runs the bare step, then rnnc train; --rounds R (default 1).
# The table gives both medians, tokens/s and rnnc train's tokens/s as a
# fraction of the bare step's (the issue wants >= 0.90). --perf records rnnc
# train under `perf record -g` (perf.data in the work directory) and prints
# where the time went by shared object and by symbol. Work files:
# DIR/bench-throughput/ (DIR default build/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=2 steps=40 bsteps=20 rounds=1 build="$root/build" nobuild=0 perf=0

usage() { sed -n '6,7p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --bench-steps) bsteps=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --no-build) nobuild=1; shift ;;
    --perf) perf=1; shift ;;
    -h|--help) usage ;;
    *) echo "train_throughput.sh: unknown option '$1'" >&2; usage ;;
  esac
done
for v in "$threads" "$steps" "$bsteps" "$rounds"; do
  case "$v" in ''|*[!0-9]*|0) echo "train_throughput.sh: --threads, --steps, --bench-steps and --rounds want a number >= 1" >&2; exit 2 ;; esac
done
[ "$steps" -ge 4 ] || { echo "train_throughput.sh: --steps must be at least 4 (2 are warm-up)" >&2; exit 2; }

if [ $nobuild = 0 ]; then
  echo "== building rnnc and rnnc_bench in $build" >&2
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >&2 || exit 1
  fi
  cmake --build "$build" -j2 --target rnnc rnnc_bench >&2 || { echo "train_throughput.sh: building failed" >&2; exit 1; }
fi
for x in "$build/rnnc" "$build/rnnc_bench"; do [ -x "$x" ] || { echo "$(basename "$0"): no $x (build it, or drop --no-build)" >&2; exit 1; }; done

work="$build/bench-throughput"
mkdir -p "$work" || exit 1
rm -f "$work"/bare.*.json "$work"/train.*.jsonl "$work"/train.*.out
fortunes=/usr/share/games/fortunes
[ -d "$fortunes" ] || { echo "train_throughput.sh: $fortunes is missing (Debian package 'fortunes')" >&2; exit 1; }
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z |
  xargs -0 cat | sed 's/^%$//' > "$work/fortunes.txt"

train=(train "$root/examples/charlm.rnn" --data "$work/fortunes.txt" --level byte --dim E=128 --dim H=512
       --batch 64 --seq 64 --optim sgd --lr 0.01 --clip-norm 5 --steps "$steps" --valid-frac 0
       --eval-every 0 --log-every 1 --threads "$threads")
for ((i = 1; i <= rounds; i++)); do
  echo "== round $i: rnnc_bench --configs C2 --steps $bsteps (OMP_NUM_THREADS=$threads)" >&2
  (cd "$root" && OMP_NUM_THREADS=$threads "$build/rnnc_bench" --threads "$threads" --configs C2 \
     --steps "$bsteps") > "$work/bare.$i.json" ||
    { echo "train_throughput.sh: rnnc_bench failed" >&2; exit 1; }
  echo "== round $i: rnnc train ... --steps $steps (OMP_NUM_THREADS=$threads)" >&2
  OMP_NUM_THREADS=$threads "$build/rnnc" "${train[@]}" --metrics "$work/train.$i.jsonl" \
    > "$work/train.$i.out" 2>&1 ||
    { cat "$work/train.$i.out" >&2; echo "train_throughput.sh: rnnc train failed" >&2; exit 1; }
  tail -1 "$work/train.$i.out" | sed 's/^/   /' >&2
done

/usr/bin/env python3 - "$work" "$rounds" "$threads" <<'EOF'
import json, statistics, sys
work, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tokens = 64 * 64
print(f"training throughput, C2 sizes (charlm E=128 H=512 V=256, 2 LSTM layers), B=64 T=64, {threads} threads")
print()
print("| round | bare step ms (median) | of which clip + SGD ms | bare tok/s | rnnc train ms (median) | "
      "rnnc train ms (mean) | rnnc train tok/s (median) | train / bare |")
print("|---|---|---|---|---|---|---|---|")
ratios = []
for i in range(1, rounds + 1):
    bare = [json.loads(l) for l in open(f"{work}/bare.{i}.json") if l.startswith("{")]
    bare = [b for b in bare if b.get("config") == "C2"][0]
    if "train" not in bare:
        sys.exit(f"train_throughput.sh: rnnc_bench gave no C2 training time: {bare}")
    bms = bare["train"]["ms_median"]
    m = [json.loads(l) for l in open(f"{work}/train.{i}.jsonl")]
    ts = [(l["step"], l["time_s"]) for l in m if "time_s" in l]
    dt = [(b[1] - a[1]) * 1e3 for a, b in zip(ts, ts[1:]) if b[0] == a[0] + 1 and a[0] >= 2]
    tms, tmean = statistics.median(dt), statistics.mean(dt)
    ratios.append(bms / tms)
    print(f"| {i} | {bms:.1f} | {bare['train'].get('clip_sgd_ms_median', float('nan')):.1f} | {tokens / bms * 1e3:,.0f} | {tms:.1f} | {tmean:.1f} | "
          f"{tokens / tms * 1e3:,.0f} | {bms / tms:.3f} |")
print()
r = statistics.median(ratios)
print(f"rnnc train runs at {r:.3f} of the bare step's tokens/s (median over rounds): "
      + ("within 10%" if r >= 0.9 else "MORE than 10% slower"))
EOF

if [ $perf = 1 ]; then
  echo "== perf record -g: rnnc train ... --steps $steps" >&2
  OMP_NUM_THREADS=$threads perf record -q -g -o "$work/perf.data" -- "$build/rnnc" "${train[@]}" \
    > "$work/perf.out" 2>&1 || { echo "train_throughput.sh: perf record failed ($work/perf.out)" >&2; exit 1; }
  echo
  echo "where rnnc train's time went (perf, all threads, compilation included; [JIT] = the compiled kernels):"
  perf report -i "$work/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null | grep '%' | head -12
  echo
  perf report -i "$work/perf.data" --no-children --sort sym -g none --stdio 2>/dev/null | grep '%' |
    grep -v '\[JIT\]\|0x0000' | head -25
fi
