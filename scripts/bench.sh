#!/usr/bin/env bash
# The per-packet criterion benches of Sluice, in one command (docs/benchmarks.md).
#
#   scripts/bench.sh            short runs (3 s measurement, 1 s warm-up per bench)
#   scripts/bench.sh --full     criterion's default measurement times
#
# Each bench prints criterion's usual "time: [low mean high]" lines; results are also in
# $CARGO_TARGET_DIR/criterion (or target/criterion). Run on a quiet machine: the numbers
# are per packet on one core and shift with whatever else is running.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=(--warm-up-time 1 --measurement-time 3)
if [[ "${1:-}" == "--full" ]]; then
    extra=()
fi

benches=(
    "sluice-ice demux"
    "sluice-dtls srtp"
    "sluice-rtp rtp"
    "sluice-sfu router"
    "sluice-bwe bwe"
    "sluice-dtls handshake"
)
for entry in "${benches[@]}"; do
    read -r package bench <<<"$entry"
    echo "== cargo bench -p $package --bench $bench"
    cargo bench -p "$package" --bench "$bench" -- "${extra[@]}"
done
