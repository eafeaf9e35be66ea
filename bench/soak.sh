#!/bin/sh
# soak.sh - a bounded mixed load against a sanitizer build of tttd for N minutes, failing on any
# sanitizer report, any 5xx, any valid request left unanswered, RSS growth after the warm-up, or
# an fd leak.
#
#   sh bench/soak.sh [-m MINUTES] [-b BIN] [-c CONCURRENCY] [-w WORKERS] [-W WARMUP_S]
#                    [-t TIMEOUT_S] [-r RSS_GROWTH_PCT] [-M MODEL_DIR] [-l LOG] [-- SERVE_ARGS...]
#
# Without -b it builds an ASan + UBSan binary (make BUILD=build/asan SANITIZER=address,undefined
# CUDA=0); with -b it takes that binary as it is and needs no make (any build runs, but only an
# instrumented one can report). The server serves MODEL_DIR (default tests/fixtures/tiny_model)
# on a random loopback port with WORKERS CPU workers; bench/soak_client.py (Python 3's standard
# library only) warms it up, reads its RSS and open fds in a quiet moment, runs the load (normal
# JSON, Accept: image/png, SSE streams, DELETE of a running job, clients hanging up mid-stream,
# bad input expecting 4xx, the OpenAI route, /healthz /readyz /metrics) for MINUTES at a fixed
# concurrency, and reads them again once the load has stopped. Then the server gets SIGTERM and
# must drain and exit 0, with no sanitizer report in its log (LeakSanitizer runs at that exit).
# Run from the repository root. Exit status: 0 when every bar holds, 1 otherwise.
set -eu

MINUTES=10
BIN=""
CONCURRENCY=4
WORKERS=2
WARMUP=30
TIMEOUT=120
RSS_GROWTH=10
MODEL=tests/fixtures/tiny_model
LOG=""
while [ $# -gt 0 ]; do
    case "$1" in
    -m) MINUTES=$2; shift 2 ;;
    -b) BIN=$2; shift 2 ;;
    -c) CONCURRENCY=$2; shift 2 ;;
    -w) WORKERS=$2; shift 2 ;;
    -W) WARMUP=$2; shift 2 ;;
    -t) TIMEOUT=$2; shift 2 ;;
    -r) RSS_GROWTH=$2; shift 2 ;;
    -M) MODEL=$2; shift 2 ;;
    -l) LOG=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
HERE=$(dirname "$0")

if [ -z "$BIN" ]; then
    make -j"$(nproc)" CUDA=0 BUILD=build/asan SANITIZER=address,undefined build/asan/tttd >&2
    BIN=build/asan/tttd
fi
[ -x "$BIN" ] || { echo "soak.sh: $BIN is not an executable" >&2; exit 2; }
[ -f "$MODEL/model_index.json" ] || { echo "soak.sh: $MODEL holds no model_index.json" >&2; exit 2; }

TMP=$(mktemp -d)
LOG=${LOG:-$TMP/server.log}
SERVER=""
KEEP=0 # a failed soak keeps its server log
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    [ "$KEEP" -eq 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Sanitizers log every report and go on where they can (the soak counts them all); LeakSanitizer
# reports at exit. A small ASan quarantine keeps freed memory from looking like growth. OpenMP
# and OpenBLAS on one thread: the workers are the parallelism.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

"$BIN" serve --host 127.0.0.1 --port 0 --model "default=$MODEL" --device cpu \
    --workers "$WORKERS" --max-steps 1000 --log-level warn "$@" >"$LOG" 2>&1 &
SERVER=$!
PORT=""
for _ in $(seq 600); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$LOG" | head -n1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    echo "soak.sh: the server did not start:" >&2
    cat "$LOG" >&2
    exit 1
fi
URL="http://127.0.0.1:$PORT"
python3 - "$URL" <<'EOF' || { echo "soak.sh: /readyz never answered 200" >&2; cat "$LOG" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(600):
    try:
        if urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=5).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF

echo "soak: $BIN serving $MODEL on $URL, $WORKERS CPU worker(s), concurrency $CONCURRENCY," \
     "$MINUTES min after ${WARMUP} s of warm-up ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores)"
STATUS=0
SECONDS_RUN=$(awk "BEGIN { print $MINUTES * 60 }")
python3 "$HERE/soak_client.py" --url "$URL" --pid "$SERVER" --seconds "$SECONDS_RUN" \
    --warmup "$WARMUP" --concurrency "$CONCURRENCY" --timeout "$TIMEOUT" \
    --rss-growth "$RSS_GROWTH" || STATUS=1

# SIGTERM: the server drains and exits; LeakSanitizer reports then.
kill -TERM "$SERVER"
RC=""
for _ in $(seq 300); do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        RC=0
        wait "$SERVER" || RC=$?
        break
    fi
    sleep 0.1
done
SERVER_LEFT=$SERVER
SERVER=""
if [ -z "$RC" ]; then
    echo "FAIL: the server did not exit within 30 s of SIGTERM"
    kill -KILL "$SERVER_LEFT" 2>/dev/null || true
    STATUS=1
elif [ "$RC" -ne 0 ]; then
    echo "FAIL: the server exited with status $RC after SIGTERM"
    STATUS=1
fi

REPORTS=$(grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$LOG" || true)
if [ "$REPORTS" -gt 0 ]; then
    echo "FAIL: $REPORTS sanitizer report(s) in the server log; the first:"
    grep -m1 -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$LOG"
    STATUS=1
else
    echo "sanitizer reports: 0"
fi
if [ "$STATUS" -eq 0 ]; then
    echo "soak: PASS"
else
    KEEP=1
    echo "soak: FAIL (server log: ${LOG})"
fi
exit "$STATUS"
