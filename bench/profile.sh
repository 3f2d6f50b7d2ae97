#!/usr/bin/env bash
# Where the server's CPU goes while forwarding: ROOMS joint sessions
# (default 50) through Tandem, sampled by `perf record` (software clock, so
# it works without hardware counters) for PROFILE_SECONDS (default 15).
# Prints the top symbols of the server's process.
#
#   bench/profile.sh [RESULTS_DIR]
#
# CALL_GRAPH=dwarf records call stacks from DWARF (callers of libc's
# memmove and malloc show only then: the release build keeps no frame
# pointers); then see callers.txt.
#
# Needs perf (apt install linux-perf) and permission to profile
# (kernel.perf_event_paranoid <= 1, or root).

source "$(dirname "$0")/lib.sh"
ROOMS=${ROOMS:-50}
PROFILE_SECONDS=${PROFILE_SECONDS:-15}
CALL_GRAPH=${CALL_GRAPH:-fp}
case $CALL_GRAPH in
    dwarf) record_graph=(--call-graph dwarf,16384 -F 499) ;;
    *) record_graph=(-g -F 1999) ;;
esac
OUT=${1:-$ROOT/bench/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "bench: perf is needed (apt install linux-perf)" >&2; exit 1; }

build
prepare_server
start_server
generate --base "$BASE" --api-key "$KEY" --cafile "$CA" --rooms "$ROOMS" \
    --seconds $((PROFILE_SECONDS + 10)) --warmup 3 --server-pid "$SERVER_PID" \
    --json "$OUT/load.json" >"$OUT/load.txt" &
load=$!
# Let everyone join and the warm-up pass before sampling.
sleep 8
perf record -e cpu-clock "${record_graph[@]}" -p "$SERVER_PID" -o "$OUT/perf.data" -- sleep "$PROFILE_SECONDS" 2>"$OUT/perf-record.log"
wait "$load" || true
stop_target
flat() { sed 's/ *-  *- *$//; s/ *$//' | grep -v '^#' | grep '%'; }
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | flat >"$OUT/all-symbols.txt"
head -40 "$OUT/all-symbols.txt" | tee "$OUT/top-symbols.txt"
# (Whole lists first, then head: a pipe cut short would fail under pipefail.)
perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
    | flat >"$OUT/inclusive-all.txt"
head -60 "$OUT/inclusive-all.txt" >"$OUT/inclusive.txt"
rm "$OUT/inclusive-all.txt"
if [[ $CALL_GRAPH == dwarf ]]; then
    # Who calls the copies and allocations, by caller.
    perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio -G \
        --symbol-filter=memmove 2>/dev/null | grep -v '^#' | head -150 >"$OUT/callers.txt" || true
fi
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | flat >"$OUT/by-object.txt"
# Self time grouped by who spends it.
for group in "str0m|is::agent|dimpl" "aws_lc|Aes256Gcm|aead_aes|gcm" \
    "memmove|memcpy|malloc|_int_free|cfree|realloc|memset" "tandem::" "\\[k\\]"; do
    awk -v p="$group" '$0 ~ p { gsub("%", "", $1); s += $1 } END { printf "%6.1f%%  %s\n", s, p }' \
        "$OUT/all-symbols.txt"
done | tee "$OUT/groups.txt"
cat "$OUT/load.txt"
echo "results: $OUT"
