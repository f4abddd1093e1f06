#!/usr/bin/env bash
# Cluster numbers for docs/benchmarks.md (the test profile: workspace opt-level 1,
# dependencies opt-level 2; real redis-server on loopback; sluice processes):
#  - join latency (WebSocket open to `joined`) through the room's node and through another
#    node (placement in Redis plus the signalling bridge), p50 / p99;
#  - time from kill -9 of the room's node to media back for participants that rejoin
#    through another node, over RUNS runs.
#
#   scripts/cluster-bench.sh            200 joins per path, 5 kill runs
#   SLUICE_BENCH_JOINS=500 RUNS=10 scripts/cluster-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is required (apt-get install redis-server)" >&2; exit 1; }
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export SLUICE_REQUIRE_REDIS=1
runs="${RUNS:-5}"

cargo test -q -p sluice --test cluster --no-run
cargo test -q -p sluice --test cluster -- --ignored --nocapture \
  bench_join_latency_through_the_owner_and_through_another_node 2>&1 | grep '^join through'

for _ in $(seq "$runs"); do
  cargo test -q -p sluice --test cluster -- --nocapture \
    killing_the_rooms_node_lets_participants_rejoin_elsewhere_within_ten_seconds 2>&1 \
    | grep '^media back'
done
