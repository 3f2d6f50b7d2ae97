# A development CA and a certificate for localhost, made by a short run of
# `tandem demo` (which makes them the way a first demo does). Sourced, not
# run: `dev_certificate BIN DIR` writes DIR/certs/{cert,key,dev-ca}.pem
# (DIR/demo and DIR/demo.log are its leftovers) and exits when it cannot.

dev_certificate() {
    local bin=$1 dir=$2
    "$bin" demo --port 0 --data-dir "$dir/demo" --certs-dir "$dir/certs" >"$dir/demo.log" 2>&1 &
    local demo=$!
    for _ in $(seq 100); do
        grep -q Listening "$dir/demo.log" 2>/dev/null && break
        sleep 0.1
    done
    kill "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
    [[ -f "$dir/certs/cert.pem" ]] || { cat "$dir/demo.log" >&2; echo "bench: no certificate" >&2; exit 1; }
}
