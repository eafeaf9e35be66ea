#!/bin/sh
# summary.sh - one line per fuzz target from the logs run.sh wrote, and the verdict.
#
# usage: tests/fuzz/summary.sh OUT_DIR NAME...
# Prints executions, libFuzzer's coverage (cov: edges, ft: features), the corpus it ended with
# and the crash file, if any. Exits 1 when a target crashed, leaked, timed out or did not run.
out=$1
shift
fail=0
for name in "$@"; do
  log="$out/$name.log"
  rc=$(cat "$out/$name.rc" 2>/dev/null || echo missing)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -n 1)
  last=$(grep -E '(INITED|pulse|NEW|REDUCE|DONE|RELOAD) +cov:' "$log" 2>/dev/null | tail -n 1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
  crash=$(ls "$out/artifacts/$name/" 2>/dev/null | head -n 1)
  if [ "$rc" != 0 ] || [ -n "$crash" ]; then
    fail=1
    verdict="FAILED (exit $rc) ${crash:+$out/artifacts/$name/$crash}"
  else
    verdict="crashes 0"
  fi
  printf 'fuzz_%-16s execs %-9s cov %-6s ft %-7s corpus %-12s %s\n' "$name" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$verdict"
done
exit $fail
