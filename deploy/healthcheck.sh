#!/bin/bash
# healthcheck.sh - exits 0 when tttd on this machine answers `GET PATH` (default /healthz) with
# 200, else 1. The container image's HEALTHCHECK runs it as `tttd-healthcheck /healthz`.
#
# It speaks HTTP through bash's /dev/tcp, so the runtime image needs neither curl nor wget. The
# port is TTTD_PORT's (default 8080, tttd's own default): set the port through TTTD_PORT, not
# --port, and the check follows it. /healthz answers without a key unless --no-public-health.
set -u

path=${1:-/healthz}
port=${TTTD_PORT:-8080}

{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 || exit 1
IFS=' ' read -r -t 5 _proto status _rest <&3 || exit 1
exec 3<&-
[ "$status" = "200" ]
