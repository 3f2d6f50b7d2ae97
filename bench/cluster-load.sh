#!/usr/bin/env bash
# The load generator against a 3-node cluster (bench/cluster.sh): how the
# rooms spread over the nodes, how fast people get in, and how long a
# failover takes under load, as the clients see it. docs/benchmarks.md,
# "Several nodes", has the figures and the command.
#
#   bench/cluster-load.sh                 # builds the release binaries
#   CLUSTER_BIN=target/release/tandem bench/cluster-load.sh
#
# Settings: ROOMS (joint sessions of 3, default 60), MEDIA_ROOMS (default
# 15), KILL_AFTER (seconds into the failover run before node-b is killed
# with kill -9, default 8), OUT (results directory, default
# bench/results/cluster-<time>). Needs what bench/cluster.sh needs.
#
# Three runs, each through all three nodes in turn (`--base` once per
# node; sessions are scheduled through node-a, each participant arrives at
# the next node and follows `redirect` to its room's node):
#   1. signaling only, ROOMS rooms joining at once: join rate, spread;
#   2. media, MEDIA_ROOMS rooms: spread, loss, latency;
#   3. signaling only with --rejoin, ROOMS rooms; node-b is killed
#      KILL_AFTER s in: the people of its rooms join again through the
#      other nodes, and the report gives the time from the drop to
#      `joined` (p50/p99/max).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ "${1:-}" != inside ]]; then
    export ROOMS=${ROOMS:-60} MEDIA_ROOMS=${MEDIA_ROOMS:-15} KILL_AFTER=${KILL_AFTER:-8}
    export OUT=${OUT:-"$ROOT/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"}
    mkdir -p "$OUT"
    CLUSTER_RUN="'$ROOT/bench/cluster-load.sh' inside" exec "$ROOT/bench/cluster.sh"
fi

# Inside the cluster (bench/cluster.sh's CLUSTER_* variables are set).
read -r -a bases <<<"$CLUSTER_BASES"
read -r -a pids <<<"$CLUSTER_PIDS"
load() {
    local name=$1
    shift
    local args=(--api-key "$CLUSTER_KEY" --cafile "$CLUSTER_CA" --quiet --json "$OUT/$name.json")
    for base in "${bases[@]}"; do args+=(--base "$base"); done
    echo "== $name: tandem-load $*" | tee -a "$OUT/summary.txt"
    # A run that is not clean (an error, someone not in) still reports.
    "$CLUSTER_BIN_DIR/tandem-load" "${args[@]}" "$@" | tee -a "$OUT/summary.txt" ||
        echo "($name: not a clean run; see its errors above)" | tee -a "$OUT/summary.txt"
}

load joins --signaling-only --rooms "$ROOMS" --join-concurrency $((ROOMS * 3)) \
    --seconds 5 --warmup 1
load media --rooms "$MEDIA_ROOMS" --seconds 10 --warmup 2

# Failover under load: node-b dies KILL_AFTER s into a run long enough for
# its rooms to come back (lease term 10 s, then the clients' rejoin).
load failover --signaling-only --rejoin --rooms "$ROOMS" --join-concurrency $((ROOMS * 3)) \
    --seconds 40 --warmup 1 &
generator=$!
sleep "$KILL_AFTER"
echo "== kill -9 node-b (pid ${pids[1]}) at $(date -u +%T.%N)" | tee -a "$OUT/summary.txt"
kill -9 "${pids[1]}"
wait "$generator" || true
echo "results in $OUT"
