#!/bin/sh
# load.sh - the daemon under wrk: starts `tttd serve` with the tiny pipeline on a random loopback
# port, drives GET /healthz and POST /v1/generate (bench/wrk/*.lua) at several concurrencies, and
# prints a Markdown section (command, device, date, requests/s, p50/p90/p99, per-phase means from
# Server-Timing) to stdout, or appends it to the file given with -o (`make load` appends to
# bench/RESULTS.md).
#
#   sh bench/load.sh [-b BIN] [-d SECONDS] [-c "1 4 16"] [-o FILE] [-- SERVE_ARGS...]
#
# Run from the repository root. The bars of issue 5: /healthz >= 20,000 req/s on the 2-core
# development machine; /v1/generate adds <= 2 ms to the engine's own time at concurrency 1
# (overhead = total - (text_encode + denoise + vae), the mean over the run's answers).
set -eu

BIN=${TTTD_BIN:-build/tttd}
SECONDS_PER_RUN=10
CONCURRENCIES="1 4 16"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    -b) BIN=$2; shift 2 ;;
    -d) SECONDS_PER_RUN=$2; shift 2 ;;
    -c) CONCURRENCIES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "load.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
SERVE_ARGS="$*"

command -v wrk >/dev/null 2>&1 || { echo "load.sh: wrk is missing (make deps installs it)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "load.sh: $BIN is missing: build it first (make all)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tttd_load.XXXXXX)
PID=""
cleanup() {
    stop_server || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Starts the server with the given extra options; sets PID and URL. The queue is large enough that
# no run is limited by 429s; warnings only, so that a log line per request does not count against
# the server.
start_server() {
    # shellcheck disable=SC2086
    "$BIN" serve --host 127.0.0.1 --port 0 --model default=tests/fixtures/tiny_model \
        --max-queue 4096 --log-level warn $SERVE_ARGS "$@" >"$WORK/server.log" 2>&1 &
    PID=$!
    PORT=""
    i=0
    while [ $i -lt 600 ]; do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -n1)
        [ -n "$PORT" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' "http://127.0.0.1:$PORT/readyz")" = 200 ] && break
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "load.sh: the server exited" >&2; exit 1; }
        sleep 0.1
        i=$((i + 1))
    done
    [ $i -lt 600 ] || { cat "$WORK/server.log" >&2; echo "load.sh: the server did not get ready" >&2; exit 1; }
    URL="http://127.0.0.1:$PORT"
    # A warm-up request, so that no run pays for the first allocation of the worker's buffers.
    curl -s -o /dev/null --noproxy '*' -H 'Content-Type: application/json' -H 'Accept: image/png' \
        -d '{"prompt":"warm up","width":32,"height":48,"steps":2,"guidance":1}' "$URL/v1/generate"
}

# SIGTERM; the server must exit 0 (it was healthy through the load and drained).
stop_server() {
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    status=0
    wait "$PID" || status=$?
    PID=""
    if [ "$status" -ne 0 ]; then
        cat "$WORK/server.log" >&2
        echo "load.sh: the server exited with status $status after the load" >&2
        return 1
    fi
}

# One wrk run; prints its RESULT JSON (the line report.lua writes).
run_wrk() { # script connections
    c=$2
    t=$c
    [ "$t" -gt 2 ] && t=2
    wrk -t"$t" -c"$c" -d"${SECONDS_PER_RUN}s" --timeout 30s --latency -s "bench/wrk/$1" "$URL" >"$WORK/wrk.txt" 2>&1 ||
        { cat "$WORK/wrk.txt" >&2; echo "load.sh: wrk failed" >&2; exit 1; }
    sed -n 's/^RESULT //p' "$WORK/wrk.txt"
}

# A field of a RESULT line ("-" when absent).
field() { # json name
    v=$(printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p")
    [ -n "$v" ] && printf '%s' "$v" || printf '%s' "-"
}

start_server
CPU=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n1)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo
    echo "## Daemon load (bench/load.sh)"
    echo
    echo "- Command: \`make load\` (\`sh bench/load.sh -d $SECONDS_PER_RUN -c \"$CONCURRENCIES\"${SERVE_ARGS:+ -- $SERVE_ARGS}\`), wrk $(wrk -v 2>&1 | sed -n 's/^wrk \([^ ]*\).*/\1/p' | head -n1), $SECONDS_PER_RUN s per run, commit $REV"
    echo "- Device: this $(nproc)-core machine ($CPU), CPU backend, \`tttd serve\` defaults (one worker) with the tiny pipeline (tests/fixtures/tiny_model)"
    echo "- Date: $(date -u +%Y-%m-%d)"
    echo
    echo "GET /healthz:"
    echo
    echo "| connections | req/s | p50 ms | p90 ms | p99 ms | errors | non-2xx |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$WORK/report.md"
for c in $CONCURRENCIES; do
    r=$(run_wrk healthz.lua "$c")
    echo "| $c | $(field "$r" rps) | $(field "$r" p50_ms) | $(field "$r" p90_ms) | $(field "$r" p99_ms) | $(field "$r" errors) | $(field "$r" non2xx) |" >>"$WORK/report.md"
done
{
    echo
    echo "POST /v1/generate (32x48, 2 steps, guidance 1, Accept: image/png); phase means in ms from Server-Timing;"
    echo "engine = text_encode + denoise + vae; server overhead = total - engine (queue wait, PNG encoding,"
    echo "HTTP); client overhead = wrk's mean latency - engine (what a client waits beyond the engine):"
    echo
    echo "| connections | req/s | p50 ms | p90 ms | p99 ms | queue | text_encode | denoise | vae | encode | total | engine | server overhead | client overhead | mean batch | errors | non-2xx |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >>"$WORK/report.md"
generate_row() { # label connections
    r=$(run_wrk generate.lua "$2")
    client=$(awk -v m="$(field "$r" mean_ms)" -v e="$(field "$r" engine_ms)" 'BEGIN { if (e == "-") print "-"; else printf "%.3f", m - e }')
    echo "| $1 | $(field "$r" rps) | $(field "$r" p50_ms) | $(field "$r" p90_ms) | $(field "$r" p99_ms) | $(field "$r" queue_ms) | $(field "$r" text_encode_ms) | $(field "$r" denoise_ms) | $(field "$r" vae_ms) | $(field "$r" encode_ms) | $(field "$r" total_ms) | $(field "$r" engine_ms) | $(field "$r" overhead_ms) | $client | $(field "$r" batch_mean) | $(field "$r" errors) | $(field "$r" non2xx) |" >>"$WORK/report.md"
}
for c in $CONCURRENCIES; do
    generate_row "$c" "$c"
done
stop_server

# The batcher is greedy by default (--max-queue-delay-ms 0): a lone request starts at once. One
# more run at concurrency 1 with a 10 ms wait for company shows what such a wait costs it.
start_server --max-queue-delay-ms 10
generate_row "1 (\`--max-queue-delay-ms 10\`)" 1
stop_server

if [ -n "$OUT" ]; then
    cat "$WORK/report.md" >>"$OUT"
    echo "load.sh: appended to $OUT"
fi
cat "$WORK/report.md"
