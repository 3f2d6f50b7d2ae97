#!/usr/bin/env bash
# CPU per forwarded packet with 1 and 2 media shards (issue 18, step 5):
# ROOMS joint sessions (default 30) through a server with `shards = N`,
# on core 0 for one shard and on cores 0 and 1 for two, the generator on
# GEN_CORE at the lowest priority (`nice -n 19`), its CPU reported on its
# own. Prints microseconds of server CPU per forwarded packet.
#
#   bench/shards.sh [RESULTS_DIR]
#
# Settings: ROOMS, SHARDS_LIST (default "1 2"), and those in bench/lib.sh.

source "$(dirname "$0")/lib.sh"
ROOMS=${ROOMS:-30}
SHARDS_LIST=${SHARDS_LIST:-1 2}
OUT=${1:-$ROOT/bench/results/shards-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

build
prepare_server
echo "$SUMMARY_HEADER"$'\tus_per_packet' >"$OUT/summary.tsv"
for shards in $SHARDS_LIST; do
    sed -i "s/^shards = .*/shards = $shards/" "$WORK/tandem.toml"
    if [[ $shards == 1 ]]; then SERVER_CORE=0; else SERVER_CORE=0-$((shards - 1)); fi
    start_server
    report="$OUT/shards-$shards.json"
    nice -n 19 taskset -c "$GEN_CORE" "$GEN_BIN" load-test --threads 1 --quiet \
        --base "$BASE" --api-key "$KEY" --cafile "$CA" --rooms "$ROOMS" --seconds 10 \
        --warmup 3 --server-pid "$SERVER_PID" --json "$report" >"$OUT/shards-$shards.txt" || true
    stop_target
    per=$(jq '(.server.cpu_percent // 0) * 10000 / ((.received_pps // 1) | if . == 0 then 1 else . end)' "$report")
    printf '%s\t%.1f\n' "$(summary_line "$report" | sed "s/^[a-z]*/shards=$shards/")" "$per" \
        | tee -a "$OUT/summary.tsv"
done
column -t -s $'\t' "$OUT/summary.tsv"
echo "results: $OUT"
