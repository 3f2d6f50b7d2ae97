#!/usr/bin/env bash
# A real scrape series for the dashboard picture (docs/operations.md): a
# release server with one media shard, scraped every second through
# GET /metrics with a `metrics` API key while `tandem load-test` runs 4,
# then 12, then 6 three-person rooms, with REST requests and refused joins
# in between. Then bench/plot_metrics.py draws the dashboard's queries.
#
#   bench/metrics-series.sh [RESULTS_DIR]
#
# Needs python3 with matplotlib and prometheus_client
# (pip install matplotlib prometheus_client).

source "$(dirname "$0")/lib.sh"
OUT=${1:-$ROOT/bench/results/metrics-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/scrapes"

build
prepare_server
METRICS_KEY=$("$BIN" apikey create --role metrics --label prometheus --data-dir "$WORK/data" | grep -o 'tdm_[A-Za-z0-9_-]*' | head -1)
start_server

scrape() {
    while true; do
        curl -sf --cacert "$CA" -H "Authorization: Bearer $METRICS_KEY" "$BASE/metrics" \
            >"$OUT/scrapes/$(date +%s.%N).prom" || true
        sleep 1
    done
}
scrape &
SCRAPER=$!

# REST traffic and refusals: a bad key (401), a missing session (404).
rest() {
    for _ in $(seq "$1"); do
        curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer $KEY" "$BASE/v1/sessions" || true
        curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer tdm_wrong" "$BASE/v1/sessions" || true
        curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer $KEY" "$BASE/v1/sessions/00000000-0000-0000-0000-000000000000" || true
        sleep 0.5
    done
}

sleep 5
for rooms in ${ROOMS:-4 12 6}; do
    rest 6
    generate --base "$BASE" --api-key "$KEY" --cafile "$CA" --rooms "$rooms" \
        --seconds 20 --warmup 2 >"$OUT/load-$rooms.txt" 2>&1 || true
done
rest 10
sleep 3
kill "$SCRAPER" 2>/dev/null || true
wait "$SCRAPER" 2>/dev/null || true
stop_target

ROOMS="${ROOMS:-4 12 6}" BUILD="${BENCH_BINARY:+debug build}" python3 "$ROOT/bench/plot_metrics.py" "$OUT/scrapes" "$ROOT/docs/screenshots/metrics-dashboard.png"
echo "results: $OUT"
