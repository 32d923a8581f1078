#!/usr/bin/env bash
# test.sh — Quick start 2: install the dependencies, build rnnc twice (build/,
# and build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer) and run the
# whole test suite in each. Exits non-zero when any test fails.
#
#   bash tools/test.sh [--werror]     --werror: warnings are errors (CI uses it)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

extra=(-DRNNC_WERROR=OFF) # explicit, so a cached ON from an earlier --werror run goes
for arg in "$@"; do
  case $arg in
  --werror) extra=(-DRNNC_WERROR=ON) ;;
  *) echo "usage: bash tools/test.sh [--werror]" >&2; exit 2 ;;
  esac
done

rnnc_install_deps

passed=0 failed=0 status=0
# Run the suite of build directory $1; add its counts to passed/failed.
run_suite() {
  local dir=$1 log rc=0
  log=$(mktemp)
  echo "== ctest in $dir"
  ctest --test-dir "$dir" --output-on-failure 2>&1 | tee "$log" || rc=$?
  local line total nfail
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)
  rm -f "$log"
  if [ -z "$line" ]; then
    echo "test.sh: ctest in $dir printed no summary" >&2
    status=1
    return
  fi
  nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  passed=$((passed + total - nfail))
  failed=$((failed + nfail))
  [ "$rc" -eq 0 ] && [ "$nfail" -eq 0 ] || status=1
}

rnnc_build "$RNNC_ROOT/build" -DRNNC_SANITIZE=OFF "${extra[@]}"
run_suite "$RNNC_ROOT/build"
rnnc_build "$RNNC_ROOT/build-asan" -DRNNC_SANITIZE=ON "${extra[@]}"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite "$RNNC_ROOT/build-asan"

# one closing line over both suites (ctest's own summaries are above)
echo "tests in build/ and build-asan/:"
echo "total: $passed passed, $failed failed"
exit $status
