#!/usr/bin/env bash
# The formatter keeps code within 140 columns but cannot break a string or a comment: this holds those to 160.
set -euo pipefail
cd "$(dirname "$0")/.."
over=$(git ls-files 'src/*.ts' 'test/*.ts' 'bench/*.ts' 'scripts/*.mjs' 'guest/*.c' 'guest/*.h' | xargs awk 'length > 160 { printf "%s:%d: %d columns\n", FILENAME, FNR, length }')
if [ -n "$over" ]; then
  printf 'lines over 160 columns (split the string or the comment):\n%s\n' "$over" >&2
  exit 1
fi
