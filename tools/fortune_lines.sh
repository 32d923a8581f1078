#!/bin/sh
# fortune_lines.sh — a text classification data set from Debian's fortunes:
# one example per fortune, "FILE<TAB>TEXT" (the fortune file's name is the
# label; the fortune's lines joined by single spaces), the format that
# `rnnc train` reads for a model with labels [B] (docs/training.md, "Data").
#
#   tools/fortune_lines.sh [--max N] [--count C] FILE... > lines.txt
#
# Fortunes longer than N characters (default 160) are left out, so batches
# stay short; --count keeps the first C of each file (balanced classes). Output order: the files in the order given, fortunes in file
# order (rnnc train shuffles and holds out its validation lines itself).
set -eu
max=160
count=0
while [ $# -ge 2 ] && { [ "$1" = "--max" ] || [ "$1" = "--count" ]; }; do
  if [ "$1" = "--max" ]; then max=$2; else count=$2; fi
  shift 2
done
if [ $# -eq 0 ]; then
  echo "usage: $0 [--max N] [--count C] FORTUNE_FILE..." >&2
  exit 2
fi
for f in "$@"; do
  [ -r "$f" ] || { echo "$0: cannot read '$f'" >&2; exit 1; }
  LC_ALL=C awk -v label="$(basename "$f")" -v max="$max" -v count="$count" '
    function flush() {
      gsub(/[ \t\r]+/, " ", text); sub(/^ /, "", text); sub(/ $/, "", text)
      if (text != "" && length(text) <= max && (count == 0 || kept < count)) {
        print label "\t" text
        kept++
      }
      text = ""
    }
    $0 == "%" { flush(); next }
    { text = text " " $0 }
    END { flush() }' "$f"
done
