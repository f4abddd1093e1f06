#!/usr/bin/env bash
# Scenario 3 of docs/resilience.md: 50 synthetic participants (sluice-loadgen) join at once
# (2 rooms x 25: 2 audio publishers + 23 receivers each) through the netsim relay, which is
# the only address the server announces, at 10 % and 30 % loss each way. Every handshake must
# complete; prints the loadgen's ICE+DTLS handshake percentiles and the server's counters.
#
#   tests/resilience/scenario3.sh OUT_DIR [on|off|both]    (called by scripts/resilience.sh)
#
# Uses $SLUICE_BIN, $SLUICE_RELAY_BIN and sluice-loadgen next to $SLUICE_BIN. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."

out="${1:?usage: scenario3.sh OUT_DIR [on|off|both]}"
recovery="${2:-both}"
server_bin="${SLUICE_BIN:-target/release/sluice}"
relay_bin="${SLUICE_RELAY_BIN:-$(dirname "$server_bin")/sluice-netsim-relay}"
loadgen_bin="$(dirname "$server_bin")/sluice-loadgen"
clients_per_room=25
rooms=2
duration_s="${SCENARIO3_DURATION_S:-40}"
mkdir -p "$out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT INT TERM

free_port() { # $1 = udp|tcp
  node -e "require('./tests/browser/lib/ports').free${1^}Port().then((p) => console.log(p))"
}

metric() { # $1 = metrics file, $2 = family; sums all label sets
  awk -v name="$2" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { printf "%d", sum }' "$1"
}

modes=(on off)
[ "$recovery" = on ] && modes=(on)
[ "$recovery" = off ] && modes=(off)

summary="$out/summary.md"
{
  echo "Scenario 3, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -r)"
  echo
  echo "| loss each way | recovery | clients | handshakes done / failed (loadgen) | ICE+DTLS p50 / p95 / p99 (ms) | server: completed / started / failed | server DTLS retransmissions | client DTLS retransmissions |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$summary"

status=0
for loss in 0.10 0.30; do
  for mode in "${modes[@]}"; do
    run="loss-${loss}-recovery-${mode}"
    dir="$out/$run"
    mkdir -p "$dir"
    http_port="$(free_port tcp)"
    media_port="$(free_port udp)"
    relay_port="$(free_port udp)"
    rec=true
    [ "$mode" = off ] && rec=false
    cat >"$dir/sluice.yaml" <<EOF
http:
  listen: "127.0.0.1:$http_port"
media:
  listen: "127.0.0.1:$media_port"
  workers: 1
  announce: ["127.0.0.1:$relay_port"]
dtls:
  recovery: $rec
limits:
  # Every client reaches the server through the relay's one address, like users behind one NAT.
  sessions_per_source_ip: 100
log:
  level: "info"
EOF
    "$server_bin" --config "$dir/sluice.yaml" 2>"$dir/server.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do
      node -e "require('http').get('http://127.0.0.1:$http_port/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))" 2>/dev/null && break
      sleep 0.1
    done
    "$relay_bin" --listen "127.0.0.1:$relay_port" --upstream "127.0.0.1:$media_port" --loss "$loss" --seed 3 \
      >"$dir/relay-stats.json" 2>"$dir/relay.log" &
    relay_pid=$!
    pids+=("$relay_pid")
    sleep 0.3
    echo "== $run: 50 clients at once, relay 127.0.0.1:$relay_port -> 127.0.0.1:$media_port, loss $loss each way"
    set +e
    "$loadgen_bin" --url "ws://127.0.0.1:$http_port/ws" --rooms "$rooms" --publishers-per-room 2 \
      --subscribers-per-room $((clients_per_room - 2)) --ramp-per-second 1000 --duration-s "$duration_s" \
      --no-video --connect-timeout-s 35 --room-prefix "s3-$mode" --json >"$dir/loadgen.json" 2>"$dir/loadgen.err"
    loadgen_status=$?
    set -e
    node -e "require('http').get('http://127.0.0.1:$http_port/metrics', (r) => r.pipe(process.stdout))" >"$dir/metrics.txt" || true
    kill "$relay_pid" "$server_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    pids=()
    row="$(node -e "
      const j = JSON.parse(require('fs').readFileSync('$dir/loadgen.json', 'utf8'));
      const f = (v) => (v === null || v === undefined ? '-' : Math.round(v));
      console.log([j.clients, j.handshakes_done + ' / ' + j.failed,
        f(j.handshake_ms.p50) + ' / ' + f(j.handshake_ms.p95) + ' / ' + f(j.handshake_ms.p99), j.dtls_retransmissions].join('|'));
    " 2>/dev/null || echo "-|-|-|-")"
    IFS='|' read -r clients done_failed pcts client_rtx <<<"$row"
    m="$dir/metrics.txt"
    server="$(metric "$m" sluice_dtls_handshakes_completed_total) / $(metric "$m" sluice_dtls_handshakes_started_total) / $(metric "$m" sluice_dtls_handshakes_failed_total)"
    echo "| $(awk "BEGIN { print $loss * 100 }") % | $mode | $clients | $done_failed | $pcts | $server | $(metric "$m" sluice_dtls_retransmissions_total) | $client_rtx |" >>"$summary"
    echo "   loadgen exit $loadgen_status: $clients clients, done/failed $done_failed, p50/p95/p99 $pcts ms; server $server"
    if [ "$loadgen_status" -ne 0 ] && [ "$mode" = on ]; then status=1; fi
  done
done
echo
cat "$summary"
exit "$status"
