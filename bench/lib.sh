# Shared by the bench scripts: build once, prepare a server (development
# certificate, configuration with one media shard, a scheduler API key), and
# start or stop it pinned to its own core. Sourced, not run.
#
# Settings (environment):
#   SERVER_CORE  core for the server or the relay (default 0)
#   GEN_CORE     core for the load generator (default 1)
#   BENCH_PORT   HTTPS port of the server (default 9444)
#   RELAY_PORT   UDP port of the bare relay (default 40000)
#   RUN_IN       a command prefix the server, relay and generator run under
#                (bench/compare.sh: `ip netns exec NS`, so that Janus and
#                the others share one network namespace); default none

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/devcert.sh"
# BENCH_BINARY: a tandem binary built elsewhere (then nothing is built).
BIN=${BENCH_BINARY:-"$ROOT/target/release/tandem"}
# GEN_BINARY: the tandem binary whose `load-test` generates the load
# (default BIN): bench/old-new.sh drives an old server with the new
# generator, so that only the server differs.
GEN_BIN=${GEN_BINARY:-$BIN}
SERVER_CORE=${SERVER_CORE:-0}
GEN_CORE=${GEN_CORE:-1}
BENCH_PORT=${BENCH_PORT:-9444}
RELAY_PORT=${RELAY_PORT:-40000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
SERVER_PID=""
RUN_IN=${RUN_IN:-}

for tool in taskset jq curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt install util-linux jq curl)" >&2; exit 1; }
done

cleanup() {
    stop_target
    rm -rf "$WORK"
}
trap cleanup EXIT

build() {
    [[ -n "${BENCH_BINARY:-}" ]] && return 0
    echo "bench: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --locked --quiet)
}

# A development certificate, a configuration with one media shard on
# loopback, and a scheduler API key, all under $WORK.
prepare_server() {
    dev_certificate "$BIN" "$WORK"
    CA="$WORK/certs/dev-ca.pem"
    BASE="https://localhost:$BENCH_PORT"
    cat >"$WORK/tandem.toml" <<TOML
public_url = "$BASE"
data_dir = "$WORK/data"
[server]
listen = "127.0.0.1:$BENCH_PORT"
shutdown_grace_secs = 1
# The load generator is one address: every participant it simulates
# connects from 127.0.0.1 (docs/security.md, "Connection limits").
max_connections_per_ip = 4096
[tls]
cert_file = "$WORK/certs/cert.pem"
key_file = "$WORK/certs/key.pem"
[media]
bind_ip = "127.0.0.1"
udp_port = 0
tcp_port = 0
shards = 1
[log]
filter = "warn"
TOML
    KEY=$("$BIN" apikey create --role scheduler --label bench --data-dir "$WORK/data" | grep -o 'tdm_[A-Za-z0-9_-]*' | head -1)
    [[ -n "$KEY" ]] || { echo "bench: no API key" >&2; exit 1; }
}

# Starts the server on SERVER_CORE and waits until it answers.
start_server() {
    $RUN_IN taskset -c "$SERVER_CORE" "$BIN" serve --config "$WORK/tandem.toml" 2>>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        $RUN_IN curl -sf --cacert "$CA" "$BASE/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$WORK/server.log" >&2
    echo "bench: the server did not start" >&2
    exit 1
}

start_relay() {
    $RUN_IN taskset -c "$SERVER_CORE" "$BIN" udp-relay --listen "127.0.0.1:$RELAY_PORT" 2>>"$WORK/relay.log" &
    SERVER_PID=$!
    sleep 0.3
}

stop_target() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

# Runs the generator on GEN_CORE with GEN_THREADS worker threads (default
# 1); extra arguments
# go to `tandem load-test`.
generate() {
    $RUN_IN taskset -c "$GEN_CORE" "$GEN_BIN" load-test --threads "${GEN_THREADS:-1}" --quiet "$@"
}

# One line of figures from a JSON report.
summary_line() {
    jq -r '[.mode, .rooms, .participants, .ready, (.received_pps|floor),
            ((.loss_percent // 0)*1000|round/1000),
            (.latency_ms.p50 // 0), (.latency_ms.p99 // 0),
            (.join_ms.p50 // 0 | round), (.join_ms.p99 // 0 | round),
            ((.server.cpu_percent // 0)|round), ((.server.rss_mib // 0)*10|round/10),
            ((.generator.cpu_percent // 0)|round),
            (.errors | to_entries | map("\(.key)=\(.value)") | join(";") | if . == "" then "-" else . end),
            (.wire_latency_ms.p50 // 0), (.wire_latency_ms.p99 // 0)]
           | @tsv' "$1"
}

SUMMARY_HEADER=$'target\trooms\tpeople\tready\trecv_pps\tloss_%\tp50_ms\tp99_ms\tjoin_p50\tjoin_p99\tsrv_cpu_%\tsrv_rss_MiB\tgen_cpu_%\terrors\twire_p50_ms\twire_p99_ms'
