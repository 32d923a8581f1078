#!/usr/bin/env bash
# bench/quality.sh — time to quality: rnnc train against PyTorch on the same
# character language model, data, batches, optimizer and wall-clock budget
# (bench/README.md, "Time to quality").
#
#   bash bench/quality.sh [--threads N] [--time S] [--batch B] [--seq T] [--lr X]
#                         [--dim E=N] [--dim H=N] [--build DIR] [--no-build] [--log-every N]
#
# Model: examples/charlm.rnn (embedding E=64, 2-layer LSTM H=256, softmax over
# the characters); PyTorch: bench/torch_charlm.py's twin of it. Data: every
# fortune file of Debian's fortunes (as tools/main_job.sh builds the corpus),
# the last 5% of its characters written to valid.txt and the rest to
# train.txt (torch_charlm.py split), both read by both tools. Training: B=32
# parallel streams x T=64 steps, state carried across chunks (truncated BPTT),
# no shuffling, Adam lr 0.002, clip by global norm 5, seed 1, --time S seconds
# of training (default 120) each, one after the other, N threads each
# (default 2). Then each evaluates the whole validation text; the table gives
# steps, tokens/s, the final validation loss and bits per character, and
# which is lower. Work files: DIR/bench-quality/ (DIR default build/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
threads=2 budget=120 B=32 T=64 lr=0.002 build="$root/build" nobuild=0 logevery=10
dims=()

usage() { sed -n '6,7p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?}; shift 2 ;;
    --time) budget=${2:?}; shift 2 ;;
    --batch) B=${2:?}; shift 2 ;;
    --seq) T=${2:?}; shift 2 ;;
    --lr) lr=${2:?}; shift 2 ;;
    --dim) dims+=("${2:?}"); shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --no-build) nobuild=1; shift ;;
    --log-every) logevery=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "quality.sh: unknown option '$1'" >&2; usage ;;
  esac
done
for v in "$threads" "$B" "$T" "$logevery"; do
  case "$v" in ''|*[!0-9]*|0) echo "quality.sh: --threads, --batch, --seq and --log-every want a number >= 1" >&2; exit 2 ;; esac
done
py=/usr/bin/python3
$py -c 'import torch' 2>/dev/null || { echo "quality.sh: /usr/bin/python3 cannot import torch (Debian python3-torch)" >&2; exit 1; }

if [ $nobuild = 0 ]; then
  echo "== building rnnc in $build" >&2
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >&2 || exit 1
  fi
  cmake --build "$build" -j2 --target rnnc >&2 || { echo "quality.sh: building rnnc failed" >&2; exit 1; }
fi
for x in "$build/rnnc"; do [ -x "$x" ] || { echo "$(basename "$0"): no $x (build it, or drop --no-build)" >&2; exit 1; }; done

work="$build/bench-quality"
mkdir -p "$work" || exit 1
fortunes=/usr/share/games/fortunes
[ -d "$fortunes" ] || { echo "quality.sh: $fortunes is missing (Debian package 'fortunes')" >&2; exit 1; }
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z |
  xargs -0 cat | sed 's/^%$//' > "$work/fortunes.txt"
echo "== split: $($py "$here/torch_charlm.py" split "$work/fortunes.txt" "$work/train.txt" "$work/valid.txt" --frac 0.05)" >&2 || exit 1

dimargs=()
for d in "${dims[@]+"${dims[@]}"}"; do dimargs+=(--dim "$d"); done
common=(--batch "$B" --seq "$T")
rm -f "$work"/rnnc.jsonl "$work"/torch.jsonl "$work"/rnnc.safetensors

echo "== rnnc train ($budget s, $threads threads, OMP_NUM_THREADS=$threads)" >&2
t0=$(date +%s.%N)
OMP_NUM_THREADS=$threads "$build/rnnc" train "$root/examples/charlm.rnn" --data "$work/train.txt" \
  --valid "$work/valid.txt" "${common[@]}" "${dimargs[@]+"${dimargs[@]}"}" --optim adam --lr "$lr" \
  --clip-norm 5 --time "$budget" --eval-every 0 --no-shuffle --seed 1 --threads "$threads" \
  --log-every "$logevery" --metrics "$work/rnnc.jsonl" --checkpoint "$work/rnnc.safetensors" \
  > "$work/rnnc.out" 2>&1
rc=$?
t1=$(date +%s.%N)
sed 's/^/   /' "$work/rnnc.out" | grep -v '^   step [0-9]* *epoch' >&2
[ $rc = 0 ] || { echo "quality.sh: rnnc train failed (exit $rc; $work/rnnc.out)" >&2; exit 1; }

echo "== check: rnnc's trained parameters evaluated by torch_charlm.py" >&2
$py "$here/torch_charlm.py" check --train "$work/train.txt" --valid "$work/valid.txt" "${common[@]}" \
  "${dimargs[@]+"${dimargs[@]}"}" --threads "$threads" --params "$work/rnnc.safetensors" > "$work/check.json" ||
  { echo "quality.sh: torch_charlm.py check failed" >&2; exit 1; }

echo "== PyTorch ($budget s, $threads threads, OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE)" >&2
t2=$(date +%s.%N)
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE \
  $py "$here/torch_charlm.py" train --train "$work/train.txt" --valid "$work/valid.txt" "${common[@]}" \
  "${dimargs[@]+"${dimargs[@]}"}" --threads "$threads" --time "$budget" --lr "$lr" --clip 5 --seed 1 \
  --log-every "$logevery" --metrics "$work/torch.jsonl" > "$work/torch.json" ||
  { echo "quality.sh: torch_charlm.py train failed" >&2; exit 1; }
t3=$(date +%s.%N)

$py - "$work" "$B" "$T" "$budget" "$threads" "$t0" "$t1" "$t2" "$t3" <<'EOF'
import json, math, sys
work, B, T, budget, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t0, t1, t2, t3 = map(float, sys.argv[6:10])
lines = [json.loads(l) for l in open(f"{work}/rnnc.jsonl")]
logs = [l for l in lines if "loss" in l and "time_s" in l]
val = [l for l in lines if "valid_loss" in l][-1]
last = logs[-1] if logs else dict(step=0, time_s=float("nan"))
import re
m = re.search(r"last training loss ([0-9.naif]+)", open(f"{work}/rnnc.out").read())
r = dict(steps=val["step"], last_loss=float(m.group(1)) if m else float("nan"), tokens_per_s=last["step"] * B * T / last["time_s"] if logs else float("nan"),
         valid_loss=val["valid_loss"], valid_bpc=val["valid_bpc"], wall=t1 - t0,
         curve=[(l["time_s"], l["loss"]) for l in logs])
p = json.loads(open(f"{work}/torch.json").read())
plogs = [json.loads(l) for l in open(f"{work}/torch.jsonl")]
p["curve"] = [(l["time_s"], l["loss"]) for l in plogs if "loss" in l]
p["wall"] = t3 - t2
chk = json.loads(open(f"{work}/check.json").read())
diff = abs(chk["valid_loss"] - r["valid_loss"])
ok = diff <= 1e-4 * max(1.0, r["valid_loss"])
print(f"check: rnnc's final parameters evaluated in PyTorch: valid loss {chk['valid_loss']:.6f}, "
      f"rnnc's {r['valid_loss']:.6f} (|diff| {diff:.2e}: {'same evaluation' if ok else 'MISMATCH'})")
print()
print(f"time to quality: examples/charlm.rnn (V={p['V']} E={p['E']} H={p['H']}), B={B} T={T}, "
      f"Adam lr {p['lr']}, clip 5, {budget:g} s of training each, {threads} threads; "
      f"validation: {chk['valid_targets']} characters")
print()
print("| | steps | epochs | tokens/s | last train loss | valid loss | valid bits/char | wall s (all) |")
print("|---|---|---|---|---|---|---|---|")
print(f"| rnnc | {r['steps']} | {r['steps'] / p['nbatch']:.2f} | {r['tokens_per_s']:,.0f} | {r['last_loss']:.4f} | "
      f"{r['valid_loss']:.4f} | {r['valid_bpc']:.4f} | {r['wall']:.0f} |")
print(f"| PyTorch | {p['steps']} | {p['epochs']:.2f} | {p['tokens_per_s']:,.0f} | {p['last_train_loss']:.4f} | "
      f"{p['valid_loss']:.4f} | {p['valid_bpc']:.4f} | {p['wall']:.0f} |")
print()


def mean_in(curve, lo, hi):
    v = [l for t, l in curve if lo < t <= hi]
    return f"{sum(v) / len(v):.3f}" if v else "-"


print("training loss (mean of the logged steps) by quarter of the budget:")
print("| | " + " | ".join(f"{int(budget * q / 4)}-{int(budget * (q + 1) / 4)} s" for q in range(4)) + " |")
print("|---|---|---|---|---|")
for name, c in (("rnnc", r["curve"]), ("PyTorch", p["curve"])):
    print(f"| {name} | " + " | ".join(mean_in(c, budget * q / 4, budget * (q + 1) / 4) for q in range(4)) + " |")
print()
lower = "rnnc" if r["valid_loss"] < p["valid_loss"] else "PyTorch"
print(f"lower validation loss: {lower} ({min(r['valid_loss'], p['valid_loss']):.4f} vs "
      f"{max(r['valid_loss'], p['valid_loss']):.4f}; {r['tokens_per_s'] / p['tokens_per_s']:.2f}x the tokens/s)")
sys.exit(0 if ok else 1)
EOF
