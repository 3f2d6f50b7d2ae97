#!/usr/bin/env bash
# The capacity curve: rooms of 3 (a joint session) ramped until loss passes
# 0.5 % or p99 latency passes 50 ms, through the bare UDP relay first (this
# machine's ceiling) and then through Tandem, each on SERVER_CORE with the
# generator on GEN_CORE. A fresh server per step, so memory is per load.
#
#   bench/capacity.sh [RESULTS_DIR]
#
# Settings: STEPS (room counts, default "10 25 50 75 100 125 150 175 200"),
# STEP_SECONDS (measurement window, default 10), TARGETS (default
# "relay sfu"), and those in bench/lib.sh.
# Writes one JSON report per step and summary.tsv to RESULTS_DIR (default
# bench/results/capacity-UTCTIME), and prints the summary and the memory
# slope.

source "$(dirname "$0")/lib.sh"
STEPS=${STEPS:-"10 25 50 75 100 125 150 175 200"}
STEP_SECONDS=${STEP_SECONDS:-10}
TARGETS=${TARGETS:-relay sfu}
OUT=${1:-$ROOT/bench/results/capacity-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

build
prepare_server
echo "$SUMMARY_HEADER" >"$OUT/summary.tsv"

for target in $TARGETS; do
    for rooms in $STEPS; do
        if [[ $target == relay ]]; then
            start_relay
            args=(--relay "127.0.0.1:$RELAY_PORT")
        else
            start_server
            args=(--base "$BASE" --api-key "$KEY" --cafile "$CA")
        fi
        report="$OUT/$target-$rooms.json"
        generate "${args[@]}" --rooms "$rooms" --seconds "$STEP_SECONDS" \
            --warmup 3 --server-pid "$SERVER_PID" --json "$report" >"$OUT/$target-$rooms.txt" || true
        stop_target
        if [[ ! -s $report ]]; then
            echo "bench: $target at $rooms rooms produced no report:" >&2
            cat "$OUT/$target-$rooms.txt" >&2
            break
        fi
        line=$(summary_line "$report")
        echo "$line" | sed "s/^[a-z]*/$target/" | tee -a "$OUT/summary.tsv"
        over=$(jq '((.loss_percent // 100) > 0.5) or ((.latency_ms.p99 // 1000) > 50) or (.ready < .participants)' "$report")
        if [[ $over == true ]]; then
            echo "bench: $target is past its limit at $rooms rooms" >&2
            break
        fi
    done
done

echo
column -t -s $'\t' "$OUT/summary.tsv"
# Memory per participant: least-squares slope of the server's RSS over the
# number of participants, over the SFU steps.
awk -F'\t' '$1 == "sfu" { n++; x += $3; y += $12; xx += $3*$3; xy += $3*$12 }
    END { if (n > 1) { s = (n*xy - x*y) / (n*xx - x*x)
          printf "\nserver memory: %.2f MiB per participant (slope over %d steps), %.1f MiB with nobody\n", s, n, (y - s*x) / n } }' \
    "$OUT/summary.tsv" | tee "$OUT/memory.txt"
echo "results: $OUT"
