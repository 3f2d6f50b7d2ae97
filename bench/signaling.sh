#!/usr/bin/env bash
# Signaling capacity: CONNECTIONS participants (default 1002: 334 joint
# sessions) join at once, JOIN_CONCURRENCY at a time, and stay connected
# for HOLD_SECONDS without media. Reports the join rate, join time and the
# server's CPU and memory while they are connected.
#
#   bench/signaling.sh [RESULTS_DIR]

source "$(dirname "$0")/lib.sh"
CONNECTIONS=${CONNECTIONS:-1002}
JOIN_CONCURRENCY=${JOIN_CONCURRENCY:-100}
HOLD_SECONDS=${HOLD_SECONDS:-20}
OUT=${1:-$ROOT/bench/results/signaling-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

build
prepare_server
start_server
generate --base "$BASE" --api-key "$KEY" --cafile "$CA" --signaling-only \
    --rooms $((CONNECTIONS / 3)) --seconds "$HOLD_SECONDS" --warmup 0 \
    --join-concurrency "$JOIN_CONCURRENCY" --join-timeout 120 \
    --server-pid "$SERVER_PID" --json "$OUT/signaling.json" | tee "$OUT/signaling.txt"
stop_target
echo "results: $OUT"
