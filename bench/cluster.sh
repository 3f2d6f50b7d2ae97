#!/usr/bin/env bash
# A 3-node Tandem cluster on this machine: a PostgreSQL of its own and three
# `tandem serve` processes on loopback sharing it (docs/deployment.md,
# "Several nodes"). Prints each node's URL, its /healthz, and a demo
# session's join links; Ctrl-C stops everything and removes the files.
#
#   bench/cluster.sh
#
# Settings (environment; not TANDEM_*, which the nodes read as
# configuration): CLUSTER_BIN (a tandem binary; default: build
# target/release/tandem), NODES (default 3), FIRST_PORT (HTTPS port of
# node-a, the others follow; default 9451), PG_PORT (default 55432).
# Needs Debian's postgresql (initdb, pg_ctl), curl and jq; run as root or as
# a user that may run PostgreSQL (as root, PostgreSQL runs as `postgres`).
#
# CLUSTER_RUN (a shell command): run it once the cluster is up instead of
# waiting for Ctrl-C, with CLUSTER_BASES (the nodes' URLs, space-separated),
# CLUSTER_PIDS (their process ids, same order), CLUSTER_CA, CLUSTER_KEY (an
# admin API key) and CLUSTER_BIN_DIR in its environment; the cluster stops
# when it ends, with its exit status (bench/cluster-load.sh uses it).
#
# node-a's address is the cluster's `public_url` here (there is no load
# balancer on loopback): links open there, and a join for a room held by
# another node is redirected to it (`redirect`). Kill a node with
# `kill -9 PID` (printed) and watch its rooms move within 15 s.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/devcert.sh"
NODES=${NODES:-3}
FIRST_PORT=${FIRST_PORT:-9451}
PG_PORT=${PG_PORT:-55432}
BIN=${CLUSTER_BIN:-"$ROOT/target/release/tandem"}
WORK=$(mktemp -d /tmp/tandem-cluster.XXXXXX)
chmod 755 "$WORK"
PIDS=()
BASES=()

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "cluster: $tool is needed (apt install $tool)" >&2; exit 1; }
done
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$PG_BIN/pg_ctl" ]] || { echo "cluster: PostgreSQL is needed (apt install postgresql)" >&2; exit 1; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

if [[ -z "${CLUSTER_BIN:-}" ]]; then
    echo "cluster: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --locked --quiet)
fi

echo "cluster: PostgreSQL on 127.0.0.1:$PG_PORT" >&2
mkdir -p "$WORK/pg"
[[ $(id -u) == 0 ]] && chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -A trust -U postgres -D "$WORK/pg" >"$WORK/initdb.log"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -q -c \
    "CREATE DATABASE tandem TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/tandem"

# A development certificate for localhost, made by a short demo run.
dev_certificate "$BIN" "$WORK"
CA="$WORK/certs/dev-ca.pem"
PUBLIC="https://localhost:$FIRST_PORT"

for n in $(seq 0 $((NODES - 1))); do
    id="node-$(printf "\\x$(printf %x $((97 + n)))")"
    port=$((FIRST_PORT + n))
    mkdir -p "$WORK/$id"
    cat >"$WORK/$id/tandem.toml" <<TOML
public_url = "$PUBLIC"
data_dir = "$WORK/$id/data"
[server]
listen = "127.0.0.1:$port"
# The load generator connects from one address.
max_connections_per_ip = 4096
[tls]
cert_file = "$WORK/certs/cert.pem"
key_file = "$WORK/certs/key.pem"
[media]
bind_ip = "127.0.0.1"
udp_port = 0
tcp_port = 0
shards = 1
[database]
url = "$DATABASE_URL"
[auth]
signing_key_file = "$WORK/signing-key.pem"
[node]
id = "$id"
public_url = "https://localhost:$port"
[log]
filter = "info"
TOML
    "$BIN" serve --drain --config "$WORK/$id/tandem.toml" 2>"$WORK/$id/serve.log" &
    PIDS+=($!)
    BASES+=("https://localhost:$port")
    up=""
    for _ in $(seq 150); do
        curl -fsS --cacert "$CA" "https://localhost:$port/healthz" >/dev/null 2>&1 && { up=1; break; }
        sleep 0.2
    done
    [[ -n $up ]] || { cat "$WORK/$id/serve.log" >&2; echo "cluster: $id did not start" >&2; exit 1; }
    echo "$id  https://localhost:$port  pid ${PIDS[-1]}  log $WORK/$id/serve.log  healthz: $(curl -sS --cacert "$CA" "https://localhost:$port/healthz")"
done

KEY=$(TANDEM_DATABASE_URL="$DATABASE_URL" "$BIN" apikey create --role admin --label cluster-demo \
    --data-dir "$WORK/node-a/data" 2>/dev/null | grep -o 'tdm_[A-Za-z0-9_-]*' | head -1)
start=$(date -u -d '-5 minutes' +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d '+55 minutes' +%Y-%m-%dT%H:%M:%SZ)
session=$(curl -fsS --cacert "$CA" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    "$PUBLIC/v1/sessions" -d @- <<JSON | jq -r .id
{"title": "Cluster demo", "kind": "couple", "starts_at": "$start", "ends_at": "$end",
 "timezone": "UTC", "clinician": {"id": "demo-clinician", "name": "Dr Rivera"},
 "participants": [{"id": "demo-patient", "name": "Alex Morgan", "role": "patient"},
                  {"id": "demo-partner", "name": "Sam Morgan", "role": "partner"}],
 "allow_overlap": true}
JSON
)
echo
echo "Demo session $session (trust $CA in the browser, or accept the warning):"
curl -fsS --cacert "$CA" -H "Authorization: Bearer $KEY" -X POST "$PUBLIC/v1/sessions/$session/invites" |
    jq -r '.invites[] | "  \(.role)\t\(.url)"'
echo
if [[ -n "${CLUSTER_RUN:-}" ]]; then
    CLUSTER_BASES="${BASES[*]}" CLUSTER_PIDS="${PIDS[*]}" CLUSTER_CA="$CA" CLUSTER_KEY="$KEY" \
        CLUSTER_BIN_DIR=$(dirname "$BIN") bash -c "$CLUSTER_RUN"
    exit $?
fi
echo "Admin API key: $KEY   (Ctrl-C stops the cluster)"
wait
