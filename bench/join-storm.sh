#!/usr/bin/env bash
# Joins under load (issue 18): ROOMS joint sessions (default 100, that is
# 300 people) all start joining at once and must all be ready, media
# flowing both ways, within JOIN_SECONDS (default 10). Run twice on a fresh
# server: alone, then while bench/flood.py sends FLOOD_PPS (default 20000)
# junk datagrams a second (DTLS ClientHellos, STUN naming nobody, random
# bytes) from 64 unvalidated addresses to the media port. The flooder runs
# on GEN_CORE with the generator (two cores: the server keeps its own).
#
#   bench/join-storm.sh [RESULTS_DIR]
#
# Settings: ROOMS, JOIN_SECONDS, FLOOD_PPS, and those in bench/lib.sh.
# Writes join-quiet.json, join-flood.json and summary.tsv.

source "$(dirname "$0")/lib.sh"
ROOMS=${ROOMS:-100}
JOIN_SECONDS=${JOIN_SECONDS:-10}
FLOOD_PPS=${FLOOD_PPS:-20000}
OUT=${1:-$ROOT/bench/results/join-storm-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }

build
prepare_server
echo "$SUMMARY_HEADER" >"$OUT/summary.tsv"
for flood in quiet flood; do
    start_server
    flooder=""
    if [[ $flood == flood ]]; then
        port=$(ss -Hulnp | grep "pid=$SERVER_PID," | awk '{print $4}' | head -1)
        [[ -n $port ]] || { echo "bench: no media port found" >&2; exit 1; }
        taskset -c "$GEN_CORE" python3 "$ROOT/bench/flood.py" "$port" "$FLOOD_PPS" \
            $((JOIN_SECONDS + 20)) >"$OUT/flood.txt" &
        flooder=$!
        sleep 1
    fi
    generate --base "$BASE" --api-key "$KEY" --cafile "$CA" --rooms "$ROOMS" \
        --join-concurrency $((ROOMS * 3)) --join-timeout "$JOIN_SECONDS" \
        --seconds 5 --warmup 1 --server-pid "$SERVER_PID" \
        --json "$OUT/join-$flood.json" >"$OUT/join-$flood.txt" || true
    [[ -n $flooder ]] && { kill "$flooder" 2>/dev/null || true; wait "$flooder" 2>/dev/null || true; }
    stop_target
    if [[ -s $OUT/join-$flood.json ]]; then
        summary_line "$OUT/join-$flood.json" | sed "s/^[a-z]*/$flood/" | tee -a "$OUT/summary.tsv"
    else
        echo "bench: no report with $flood:" >&2
        cat "$OUT/join-$flood.txt" >&2
    fi
done
column -t -s $'\t' "$OUT/summary.tsv"
echo "results: $OUT"
