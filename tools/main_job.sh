#!/usr/bin/env bash
# main_job.sh — the main job of the README's quick start: for every example
# model, check it, initialize its parameters and random inputs, compile it and
# run it forward and backward (the jit engine), and check its gradients: the
# exact ones against finite differences, the compiled ones against the exact
# ones; print what each command printed. (A later version trains.)
#
#   bash tools/main_job.sh [PATH/TO/rnnc]      default: build/rnnc
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rnnc=${1:-$root/build/rnnc}
[ -x "$rnnc" ] || { echo "main_job: no rnnc at $rnnc; build it first (bash tools/setup_and_run.sh)" >&2; exit 1; }
rnnc=$(realpath "$rnnc")
cd "$root"
work=out/main_job
mkdir -p "$work"

failed=()
# Print a command as a shell prompt line, run it, remember a failure.
step() {
  echo
  echo "\$ rnnc ${*}"
  "$rnnc" "$@" || failed+=("rnnc $*")
}

examples=(examples/*.rnn)
echo "rnnc main job: ${#examples[@]} example models; files under $work/"

echo
echo "==== 1. check: parse, verify, show nodes and parameters"
for ex in "${examples[@]}"; do
  step check "$ex"
done

echo
echo "==== 2. print: canonical text, and the backward cell autodiff derives"
step print examples/mgu.rnn
step print examples/mgu.rnn --after autodiff

echo
echo "==== 3. init + run: compiled forward and backward through time (jit engine)"
for ex in "${examples[@]}"; do
  name=$(basename "$ex" .rnn)
  dims=(--dim T=12 --dim B=4)
  [ "$name" = seq2seq ] && dims+=(--dim S=9)
  step init "$ex" --out "$work/$name.params.safetensors" \
    --inputs "$work/$name.inputs.safetensors" --seed 1 "${dims[@]}"
  step run "$ex" --params "$work/$name.params.safetensors" \
    --inputs "$work/$name.inputs.safetensors" --out "$work/$name.out.safetensors" --grad
done

echo
echo "==== 4. gradcheck: float64 gradients against central finite differences, compiled float32 ones against them"
for ex in "${examples[@]}"; do
  step gradcheck "$ex"
done

echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "main job: all ${#examples[@]} examples checked, run and gradient-checked: PASS"
else
  echo "main job: ${#failed[@]} command(s) failed:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
