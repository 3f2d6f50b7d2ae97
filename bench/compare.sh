#!/usr/bin/env bash
# Tandem, the bare UDP relay (this machine's ceiling) and Janus (a peer SFU,
# its VideoRoom plugin) side by side: the same generator, the same rooms,
# media and stamps, the same steps and the same rule (loss <= 0.5 % and p99
# added latency <= 50 ms), each target on SERVER_CORE with the generator on
# GEN_CORE, interleaved step by step so that all three see the same machine.
#
#   bench/compare.sh [RESULTS_DIR]
#
# Settings: STEPS (room counts, default "25 50 75 100 125 150"), RUNS
# (repetitions of the whole ramp, default 3; medians are quoted),
# STEP_SECONDS (default 10), SIZE (people per room, default 3; 9 is a group
# of four couples and their therapist), SIMULCAST (1: publishers send three
# layers), TARGETS (default "relay sfu janus"; add "old" with OLD_BINARY,
# an older tandem binary, for the curve before and after a change in the
# same runs), JANUS (the janus binary,
# default janus on PATH: `apt-get install janus`), and those in
# bench/lib.sh.
#
# Janus gathers no loopback candidates, so every target runs in a network
# namespace of its own with a veth interface (10.203.0.1/24, named jb0)
# that Janus is told to use (`ice_enforce_list`); traffic to it still takes
# the kernel's loopback path, as it does for the relay and Tandem on
# 127.0.0.1. DTLS-SRTP stays on, as with Tandem. Needs root (ip netns).
#
# Writes one JSON report per target, step and run, summary.tsv (every step)
# and capacity.tsv (per run and target: the largest step within the rule,
# its forwarded packets/s, the server's CPU share, packets/s per core, p99,
# RSS), and prints capacity.tsv and the medians.

source "$(dirname "$0")/lib.sh"
STEPS=${STEPS:-"25 50 75 100 125 150"}
RUNS=${RUNS:-3}
STEP_SECONDS=${STEP_SECONDS:-10}
SIZE=${SIZE:-3}
TARGETS=${TARGETS:-relay sfu janus}
JANUS=${JANUS:-janus}
JANUS_PORT=${JANUS_PORT:-8188}
JANUS_IP=10.203.0.1
OUT=${1:-$ROOT/bench/results/$(date -u +%Y%m%d)-compare}
mkdir -p "$OUT"

size=(--size "$SIZE")
simulcast=()
[[ ${SIMULCAST:-} == 1 ]] && simulcast+=(--simulcast)

NS=tandem-bench-$$
[[ $(id -u) == 0 ]] || { echo "bench: compare.sh needs root (a network namespace for Janus)" >&2; exit 1; }
if [[ " $TARGETS " == *" janus "* ]]; then
    command -v "$JANUS" >/dev/null || { echo "bench: janus is needed (apt-get install janus)" >&2; exit 1; }
fi
ip netns add "$NS"
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT
ip -n "$NS" link set lo up
# A veth pair with both ends in the namespace (containers often lack the
# dummy driver); only jb0 has an address.
ip -n "$NS" link add jb0 type veth peer name jb1
ip -n "$NS" addr add "$JANUS_IP/24" dev jb0
ip -n "$NS" link set jb1 up
ip -n "$NS" link set jb0 up
# BENCH_PRIORITY=rt runs the targets and the generator SCHED_FIFO (chrt -f
# 1; the kernel still leaves 5 % of each core to others): on a machine that
# is also compiling, ordinary priority left them a fraction of their cores
# and the figures measured the compiler. nice (-10) is gentler; the default
# is ordinary priority, for a quiet machine.
case ${BENCH_PRIORITY:-} in
rt) priority="chrt -f 1" ;;
nice) priority="nice -n -10" ;;
"") priority="" ;;
*) echo "bench: BENCH_PRIORITY is rt, nice or empty" >&2; exit 1 ;;
esac
RUN_IN="ip netns exec $NS $priority"

# Janus's configuration: the WebSocket transport on loopback, the VideoRoom
# plugin and nothing else, candidates from jb0 only, logging at warnings
# (as Tandem's bench config), everything else Janus's defaults (one event
# loop per handle, a self-signed DTLS certificate made at start).
prepare_janus() {
    local lib
    lib=$(dirname "$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins/libjanus_videoroom.so$')" 2>/dev/null || true)
    lib=${lib%/plugins}
    [[ -d $lib ]] || lib=/usr/lib/x86_64-linux-gnu/janus
    mkdir -p "$WORK/janus"
    cat >"$WORK/janus/janus.jcfg" <<CFG
general: {
    configs_folder = "$WORK/janus"
    plugins_folder = "$lib/plugins"
    transports_folder = "$lib/transports"
    events_folder = "$lib/events"
    loggers_folder = "$lib/loggers"
    debug_level = 3
    log_to_stdout = true
}
plugins: {
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
    disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
events: {
    broadcast = false
}
loggers: {
    disable = "libjanus_jsonlog.so"
}
media: {
}
nat: {
    ice_enforce_list = "jb0"
}
CFG
    cat >"$WORK/janus/janus.transport.websockets.jcfg" <<CFG
general: {
    json = "compact"
    ws = true
    ws_port = $JANUS_PORT
    ws_ip = "127.0.0.1"
    wss = false
}
admin: {
    admin_ws = false
}
CFG
    cat >"$WORK/janus/janus.plugin.videoroom.jcfg" <<CFG
general: {
}
CFG
}

start_janus() {
    $RUN_IN taskset -c "$SERVER_CORE" "$JANUS" -C "$WORK/janus/janus.jcfg" -F "$WORK/janus" >>"$WORK/janus.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        $RUN_IN bash -c "exec 3<>/dev/tcp/127.0.0.1/$JANUS_PORT" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$WORK/janus.log" >&2
    echo "bench: janus did not start" >&2
    exit 1
}

build
prepare_server
prepare_janus
echo "run	$SUMMARY_HEADER" >"$OUT/summary.tsv"
echo $'run\ttarget\trooms\tpeople\trecv_pps\tsrv_cpu_%\tpps_per_core\tp99_ms\tsrv_rss_MiB' >"$OUT/capacity.tsv"

for run in $(seq "$RUNS"); do
    declare -A over=() best=()
    for rooms in $STEPS; do
        for target in $TARGETS; do
            [[ -n ${over[$target]:-} ]] && continue
            case $target in
            relay)
                # The relay forwards everything it gets: no simulcast.
                start_relay
                args=(--relay "127.0.0.1:$RELAY_PORT" "${size[@]}")
                ;;
            sfu | old)
                if [[ $target == old ]]; then
                    BIN=${OLD_BINARY:?OLD_BINARY: the older tandem binary} start_server
                else
                    start_server
                fi
                args=(--base "$BASE" --api-key "$KEY" --cafile "$CA" "${size[@]}" "${simulcast[@]}")
                ;;
            janus)
                start_janus
                args=(--janus "ws://127.0.0.1:$JANUS_PORT" --bind-ip "$JANUS_IP" "${size[@]}" "${simulcast[@]}")
                ;;
            *) echo "bench: unknown target $target" >&2; exit 1 ;;
            esac
            name="$target-$rooms-run$run"
            report="$OUT/$name.json"
            generate "${args[@]}" --rooms "$rooms" --seconds "$STEP_SECONDS" \
                --warmup 3 --server-pid "$SERVER_PID" --json "$report" >"$OUT/$name.txt" 2>&1 || true
            stop_target
            if [[ ! -s $report ]]; then
                echo "bench: $target at $rooms rooms produced no report:" >&2
                cat "$OUT/$name.txt" >&2
                over[$target]=1
                continue
            fi
            line=$(summary_line "$report")
            echo "$line" | sed "s/^[a-z]*/$run	$target/" | tee -a "$OUT/summary.tsv"
            if [[ $(jq '((.loss_percent // 100) > 0.5) or ((.latency_ms.p99 // 1000) > 50) or (.ready < .participants)' "$report") == true ]]; then
                echo "bench: $target is past its limit at $rooms rooms" >&2
                over[$target]=1
            else
                best[$target]=$report
            fi
        done
    done
    for target in $TARGETS; do
        report=${best[$target]:-}
        [[ -n $report ]] || { echo "$run	$target	0	0	0	0	0	0	0" >>"$OUT/capacity.tsv"; continue; }
        jq -r --arg run "$run" --arg target "$target" '
            (.server.cpu_percent // 0) as $cpu
            | [$run, $target, .rooms, .participants, (.received_pps|floor), ($cpu|round),
               (if $cpu > 0 then (.received_pps / ($cpu / 100) | floor) else 0 end),
               (.latency_ms.p99 // 0), ((.server.rss_mib // 0)*10|round/10)] | @tsv' "$report" >>"$OUT/capacity.tsv"
    done
    unset over best
done

echo
column -t -s $'\t' "$OUT/capacity.tsv"
# Medians over the runs, and each target's packets/s per core as a share of
# the relay's (ratios from the same invocation travel between machines
# better than absolute figures).
awk -F'\t' 'NR > 1 { n[$2]++; pps[$2, n[$2]] = $5; core[$2, n[$2]] = $7; p99[$2, n[$2]] = $8; rss[$2, n[$2]] = $9 }
    function median(a, t, k,   v, i, j, x) {
        for (i = 1; i <= k; i++) v[i] = a[t, i]
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
        return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    END {
        printf "\nmedians over the runs\ntarget\trecv_pps\tpps_per_core\tp99_ms\trss_MiB\tshare_of_relay\n"
        r = ("relay" in n) ? median(core, "relay", n["relay"]) : 0
        for (t in n) {
            c = median(core, t, n[t])
            printf "%s\t%d\t%d\t%.1f\t%.1f\t%s\n", t, median(pps, t, n[t]), c, median(p99, t, n[t]), median(rss, t, n[t]), (r > 0 ? sprintf("%.0f %%", 100 * c / r) : "-")
        }
    }' "$OUT/capacity.tsv" | tee "$OUT/medians.tsv"
echo "results: $OUT"
