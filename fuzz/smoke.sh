#!/usr/bin/env bash
# A short run of every fuzz target (docs/security.md, "Fuzzing").
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The machine's toolchain is
# stable; RUSTC_BOOTSTRAP=1 lets it accept the sanitizer flags cargo-fuzz
# passes. SECONDS_EACH sets each target's run (default 10 s; the figures in
# docs/security.md come from 600 s runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
each="${SECONDS_EACH:-10}"
for target in signal_message tokens config ledger_export ice_tcp_frames shard_datagrams; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    if [ -d "fuzz/seeds/$target" ]; then cp -n "fuzz/seeds/$target"/* "$corpus"/; fi
    echo "==> $target (${each} s)"
    cargo fuzz run -O "$target" "$corpus" -- -max_total_time="$each" -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|Done|==[0-9]+==ERROR|SUMMARY)' || true
done
