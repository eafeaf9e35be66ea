#!/bin/sh
# run.sh - runs one libFuzzer target of tests/fuzz/ for a while (make fuzz-run-NAME calls it).
#
# usage: tests/fuzz/run.sh BIN_DIR OUT_DIR NAME SECONDS [libFuzzer flags...]
# Runs BIN_DIR/fuzz_NAME for SECONDS from the committed seeds tests/fuzz/corpus/NAME plus what
# earlier runs found (OUT_DIR/corpus/NAME, where new inputs go), with tests/fuzz/NAME.dict when
# there is one. The log goes to OUT_DIR/NAME.log, the exit status to OUT_DIR/NAME.rc and a
# crashing input to OUT_DIR/artifacts/NAME/; the status of this script is always 0 so that
# parallel runs all finish (tests/fuzz/summary.sh reports and fails).
set -u
bin=$1 out=$2 name=$3 secs=$4
shift 4
mkdir -p "$out/corpus/$name" "$out/artifacts/$name"
rm -f "$out/artifacts/$name"/* "$out/$name.rc"
dict=
[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
echo "fuzz_$name: $secs s, log in $out/$name.log"
# One BLAS thread: the engine needs no more here, and OpenBLAS's pool can hang at exit.
OPENBLAS_NUM_THREADS=1 TTTD_FUZZ_ROOT="${TTTD_FUZZ_ROOT:-$(pwd)}" \
  "$bin/fuzz_$name" -max_total_time="$secs" -timeout=60 -print_final_stats=1 \
  -artifact_prefix="$out/artifacts/$name/" $dict "$@" \
  "$out/corpus/$name" "tests/fuzz/corpus/$name" >"$out/$name.log" 2>&1
echo $? >"$out/$name.rc"
exit 0
