#!/usr/bin/env bash
# Side by side in one invocation (issue 18): the bare relay, an older
# tandem binary (OLD_DIR, with tandem-load and tandem-relay next to it) and
# this tree's release build, RUNS times (default 3) each over STEPS (default
# "50 80 100 120"), alternating, on the same cores. Prints the median of
# each figure per target and room count; raw per-run results stay under
# RESULTS_DIR/run-N-TARGET/. Every target gets the same generator, this
# tree's.
#
#   OLD_DIR=/path/to/old/bin bench/old-new.sh [RESULTS_DIR]
#
# Settings: OLD_DIR (required), RUNS, STEPS, STEP_SECONDS, and those in
# bench/lib.sh.

set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${OLD_DIR:?OLD_DIR: the directory of the tandem binary to compare with}"
RUNS=${RUNS:-3}
export STEPS=${STEPS:-"50 80 100 120"}
OUT=${1:-$ROOT/bench/results/old-new-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release --locked --quiet)
NEW_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
for run in $(seq "$RUNS"); do
    TARGETS=relay BENCH_BINARY="$NEW_DIR/tandem" "$HERE/capacity.sh" "$OUT/run-$run-relay" >/dev/null
    TARGETS=sfu BENCH_BINARY="$OLD_DIR/tandem" GEN_BINARY="$NEW_DIR/tandem" "$HERE/capacity.sh" "$OUT/run-$run-old" >/dev/null
    TARGETS=sfu BENCH_BINARY="$NEW_DIR/tandem" "$HERE/capacity.sh" "$OUT/run-$run-new" >/dev/null
    echo "compare: run $run of $RUNS done" >&2
done
# Medians per (target, rooms) of received pps, loss, p99, server CPU, RSS,
# and forwarded packets per second per server core.
for target in relay old new; do
    for f in "$OUT"/run-*-"$target"/summary.tsv; do
        tail -n +2 "$f" | awk -v t="$target" -F'\t' -v OFS='\t' '{$1 = t; print}'
    done
done | sort -k1,1 -k2,2n | awk -F'\t' -v OFS='\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        k = $1 "\t" $2
        if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
        pps[k] = pps[k] " " $5; loss[k] = loss[k] " " $6; p99[k] = p99[k] " " $8
        cpu[k] = cpu[k] " " $11; rss[k] = rss[k] " " $12
        per[k] = per[k] " " ($11 > 0 ? $5 * 100 / $11 : 0)
        n[k]++
    }
    END {
        print "target", "rooms", "runs", "recv_pps", "loss_%", "p99_ms", "srv_cpu_%", "srv_rss_MiB", "pps_per_core"
        for (i = 1; i <= nk; i++) {
            k = keys[i]
            printf "%s\t%d\t%.0f\t%.3f\t%.2f\t%.0f\t%.1f\t%.0f\n", k, n[k], median(pps[k]), median(loss[k]),
                median(p99[k]), median(cpu[k]), median(rss[k]), median(per[k])
        }
    }' | tee "$OUT/medians.tsv" | column -t -s $'\t'
echo "results: $OUT"
