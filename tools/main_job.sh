#!/usr/bin/env bash
# main_job.sh — the main job of the README's quick start: train the character
# language model examples/charlm.rnn (a 2-layer LSTM) on Debian's fortunes for
# about two minutes, report its validation bits per character, save a
# checkpoint, then generate: samples at two temperatures and a beam-search
# completion of a prefix.
#
#   bash tools/main_job.sh [PATH/TO/rnnc]      default: build/rnnc
#   RNNC_MAIN_SECONDS=120                      the training time budget
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rnnc=${1:-$root/build/rnnc}
[ -x "$rnnc" ] || { echo "main_job: no rnnc at $rnnc; build it first (bash tools/setup_and_run.sh)" >&2; exit 1; }
rnnc=$(realpath "$rnnc")
cd "$root"
work=out/main_job
mkdir -p "$work"
seconds=${RNNC_MAIN_SECONDS:-120}

# The corpus: every fortune file Debian's `fortunes` package ships (not the
# offensive ones under off/), the '%' lines between fortunes made blank lines.
fortunes=/usr/share/games/fortunes
[ -d "$fortunes" ] || { echo "main_job: $fortunes is missing (Debian package 'fortunes')" >&2; exit 1; }
corpus=$work/fortunes.txt
find "$fortunes" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 | sort -z |
  xargs -0 cat | sed 's/^%$//' > "$corpus"
echo "rnnc main job: examples/charlm.rnn on $(wc -c < "$corpus") bytes of fortunes ($corpus)"

# Print a command as a shell prompt line and run it.
step() {
  echo
  echo "\$ rnnc$(printf ' %q' "$@")"
  "$rnnc" "$@"
}

ckpt=$work/charlm.safetensors
rm -f "$ckpt" "$work/metrics.jsonl"
step train examples/charlm.rnn --data "$corpus" --valid-frac 0.05 --batch 32 --seq 64 \
  --optim adam --lr 0.002 --time "$seconds" --eval-every 500 \
  --checkpoint "$ckpt" --metrics "$work/metrics.jsonl"

step eval examples/charlm.rnn --params "$ckpt" --sentence "The truth is out there." \
  --sentence "there. out is truth The"

step sample examples/charlm.rnn --params "$ckpt" --prefix "The " --length 300 --temperature 0.6 --seed 1
step sample examples/charlm.rnn --params "$ckpt" --prefix "The " --length 300 --temperature 1.0 --seed 1
step sample examples/charlm.rnn --params "$ckpt" --prefix "A computer is " --length 60 --beam 8

echo
echo "main job: trained, evaluated and sampled; checkpoint $ckpt, metrics $work/metrics.jsonl"
