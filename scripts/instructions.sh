#!/usr/bin/env bash
# Instructions per request for each benchmark id of benches/layers.rs,
# counted by callgrind: repeatable where wall-clock figures are noisy.
# Needs valgrind. Usage: scripts/instructions.sh [id ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ids=("$@")
[ ${#ids[@]} -gt 0 ] || ids=(bare timeout retry breaker concurrency_limit rate_limit propagate_deadline stack)
cargo bench --bench layers --no-run >/dev/null 2>&1
bin=$(cargo bench --bench layers --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*layers-[^"]*"' | head -1 | cut -d'"' -f4)
count() {
  SINEW_BENCH_LOOP="$1:$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 \
    | awk '/Collected/ {print $4}'
}
bare=""
for id in "${ids[@]}"; do
  small=$(count "$id" 1000)
  large=$(count "$id" 11000)
  per=$(( (large - small) / 10000 ))
  [ "$id" = bare ] && bare=$per
  if [ -n "$bare" ] && [ "$id" != bare ]; then
    printf '%-20s %6d instructions/request (+%d over bare)\n' "$id" "$per" $((per - bare))
  else
    printf '%-20s %6d instructions/request\n' "$id" "$per"
  fi
done
