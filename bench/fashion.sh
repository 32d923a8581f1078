#!/usr/bin/env bash
# bench/fashion.sh — Fashion-MNIST read row by row: examples/fashion_lstm.rnn
# (LSTM H=128 over 28 steps of 28 pixels, last state -> softmax over 10
# classes) trained with `rnnc train` on the 60,000 training images, the 10,000
# t10k images as validation (bench/README.md, "Fashion-MNIST").
#
#   bash bench/fashion.sh [--threads N] [--epochs N] [--batch B] [--lr X]
#                         [--schedule constant|cosine] [--build DIR] [--no-build]
#
# Defaults: 2 threads, 4 epochs, B=64, Adam lr 0.004 with a cosine schedule
# down to 0 at the last step (no warm-up), clip by global norm 5, shuffled
# (seed 1); the test set is evaluated after every epoch and at the end. Prints
# the test accuracy after each epoch, the final one, the training time and the
# whole command's wall time (compilation and evaluations included). Work
# files: DIR/bench-fashion/ (DIR default build/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=2 epochs=4 B=64 lr=0.004 sched=cosine build="$root/build" nobuild=0

usage() { sed -n '7,8p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --epochs) epochs=${2:?}; shift 2 ;;
    --batch) B=${2:?}; shift 2 ;;
    --lr) lr=${2:?}; shift 2 ;;
    --schedule) sched=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --no-build) nobuild=1; shift ;;
    -h|--help) usage ;;
    *) echo "fashion.sh: unknown option '$1'" >&2; usage ;;
  esac
done
for v in "$threads" "$epochs" "$B"; do
  case "$v" in ''|*[!0-9]*|0) echo "fashion.sh: --threads, --epochs and --batch want a number >= 1" >&2; exit 2 ;; esac
done
case "$sched" in constant|cosine) ;; *) echo "fashion.sh: --schedule wants constant or cosine" >&2; exit 2 ;; esac

d=/usr/share/datasets/fashion-mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$d/$f.gz" ] || { echo "fashion.sh: $d/$f.gz is missing (Debian package dataset-fashion-mnist)" >&2; exit 1; }
done

if [ $nobuild = 0 ]; then
  echo "== building rnnc in $build" >&2
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >&2 || exit 1
  fi
  cmake --build "$build" -j2 --target rnnc >&2 || { echo "fashion.sh: building rnnc failed" >&2; exit 1; }
fi
for x in "$build/rnnc"; do [ -x "$x" ] || { echo "$(basename "$0"): no $x (build it, or drop --no-build)" >&2; exit 1; }; done
work="$build/bench-fashion"
mkdir -p "$work" || exit 1
rm -f "$work/metrics.jsonl"

perepoch=$(( (60000 + B - 1) / B ))   # batches per epoch (a last partial batch is padded)
steps=$(( perepoch * epochs ))
schedargs=()
[ "$sched" = cosine ] && schedargs=(--schedule cosine --steps "$steps")
cmd=("$build/rnnc" train "$root/examples/fashion_lstm.rnn"
     --data "$d/train-images-idx3-ubyte.gz" --labels "$d/train-labels-idx1-ubyte.gz"
     --valid "$d/t10k-images-idx3-ubyte.gz" --valid-labels "$d/t10k-labels-idx1-ubyte.gz"
     --batch "$B" --optim adam --lr "$lr" "${schedargs[@]+"${schedargs[@]}"}" --clip-norm 5
     --epochs "$epochs" --eval-every "$perepoch" --log-every 100 --seed 1 --threads "$threads"
     --metrics "$work/metrics.jsonl")
echo "== OMP_NUM_THREADS=$threads rnnc$(printf ' %q' "${cmd[@]:1}")" >&2
t0=$(date +%s.%N)
OMP_NUM_THREADS=$threads "${cmd[@]}" > "$work/train.out" 2>&1
rc=$?
t1=$(date +%s.%N)
grep -v '^step [0-9]*  epoch' "$work/train.out" | sed 's/^/   /' >&2
[ $rc = 0 ] || { echo "fashion.sh: rnnc train failed (exit $rc; $work/train.out)" >&2; exit 1; }

python3 - "$work" "$t0" "$t1" "$threads" "$epochs" "$B" "$lr" "$sched" <<'EOF'
import json, re, sys
work, t0, t1, threads, epochs, B, lr, sched = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:]
m = [json.loads(l) for l in open(f"{work}/metrics.jsonl")]
vals = [l for l in m if "valid_accuracy" in l]
out = open(f"{work}/train.out").read()
tr = re.search(r"trained (\d+) steps in ([0-9.]+) s", out)
print(f"Fashion-MNIST, examples/fashion_lstm.rnn (LSTM H=128, 28 rows of 28 pixels), {epochs} epochs, B={B}, "
      f"Adam lr {lr} ({sched}), clip 5, {threads} threads")
print()
print("| after step | epoch | test loss | test accuracy |")
print("|---|---|---|---|")
for v in vals:
    print(f"| {v['step']} | {v['epoch']} | {v['valid_loss']:.4f} | {100 * v['valid_accuracy']:.2f}% |")
print()
acc = vals[-1]["valid_accuracy"]
print(f"final test accuracy {100 * acc:.2f}% ({'>=' if acc >= 0.88 else 'BELOW'} 88%); "
      f"{tr.group(1)} steps, training {float(tr.group(2)):.0f} s (evaluations included), "
      f"wall {t1 - t0:.0f} s (compilation included)")
EOF
