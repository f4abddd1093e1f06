#!/usr/bin/env bash
# Heap profile of the server under one load: the release server under heaptrack, one
# media worker, loopback, the load generator driving it; prints heaptrack's peak and the
# peak divided by the participants, then the largest allocation sites at the peak.
#
#   scripts/heap.sh PUBLISHERS_PER_ROOM [sluice-loadgen options...]
#   e.g. scripts/heap.sh 1 --subscribers-per-room 200   (one publisher, 200 viewers)
#
# Build first: cargo build --release -p sluice -p sluice-loadgen
set -euo pipefail
publishers=$1; shift
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
duration="${HEAP_DURATION_S:-15}"
http_port="${LOAD_HTTP_PORT:-18480}"; media_port="${LOAD_MEDIA_PORT:-41400}"
work=$(mktemp -d)
cat > "$work/bench.yaml" <<YAML
http: { listen: "127.0.0.1:$http_port" }
media: { listen: "127.0.0.1:$media_port", workers: 1, announce: ["127.0.0.1"] }
limits:
  participants_per_room: ${LOAD_PARTICIPANTS_PER_ROOM:-600}
  sessions_per_source_ip: 100000
  handshakes_in_flight: 100000
  signaling_messages_per_second: 1000
log: { level: warn }
YAML
heaptrack -o "$work/heap" "$bin/sluice" --config "$work/bench.yaml" > "$work/server.log" 2>&1 &
tracker=$!
for _ in $(seq 100); do curl -s "127.0.0.1:$http_port/metrics" > /dev/null 2>&1 && break; sleep 0.2; done
"$bin/sluice-loadgen" --url "ws://127.0.0.1:$http_port/ws" --rooms 1 \
  --publishers-per-room "$publishers" --duration-s "$duration" --json "$@" > "$work/loadgen.json" 2> "$work/loadgen.err" || true
participants=$(python3 -c "import json,sys; print(json.load(open('$work/loadgen.json'))['clients'])")
pid=$(pgrep -P "$tracker" -x sluice || true)
[ -n "$pid" ] && kill -INT "$pid"
wait "$tracker" || true
file=$(ls "$work"/heap.* | head -1)
heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --peak-limit 40 --merge-backtraces 0 > "$work/peaks.txt" 2>/dev/null || true
peak=$(grep -m1 "peak heap memory consumption" "$work/peaks.txt" | sed 's/.*: //')
echo "participants: $participants; peak heap: $peak; profile: $file"
echo "$work/peaks.txt"
