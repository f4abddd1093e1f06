#!/usr/bin/env bash
# A room spanning two nodes against the same room on one node: a real redis-server, two
# release `sluice` nodes on loopback, and sluice-loadgen joining one room through node n1.
# Prints forwarded packets/s (both nodes), server CPU (both nodes) per forwarded packet,
# relay frames/s between the nodes and the load generator's loss and delay, measured over
# the steady part of the run (40 % to 90 %).
#
#   scripts/cluster-load.sh SPREAD PUBLISHERS [sluice-loadgen options...]
#   e.g. scripts/cluster-load.sh 50 8 --subscribers-per-room 92 --decrypt-every 16
#   SPREAD: cluster.room_spread_participants of both nodes (0: the room stays on one node)
#
# Build first: cargo build --release -p sluice -p sluice-loadgen
set -euo pipefail
spread=$1; publishers=$2; shift 2
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
duration="${LOAD_DURATION_S:-25}"
redis_port="${LOAD_REDIS_PORT:-16390}"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
for n in 1 2; do
  cat > "$work/n$n.yaml" <<YAML
http: { listen: "127.0.0.1:1848$n" }
media: { listen: "127.0.0.1:4${n}500", workers: 1, announce: ["127.0.0.1"] }
limits: { participants_per_room: 400, sessions_per_source_ip: 100000, handshakes_in_flight: 100000, signaling_messages_per_second: 1000 }
log: { level: warn }
cluster:
  redis_url: "redis://127.0.0.1:$redis_port"
  node_id: "n$n"
  internal_url: "http://127.0.0.1:1848$n"
  relay_listen: "127.0.0.1:789$n"
  room_spread_participants: $spread
YAML
  "$bin/sluice" --config "$work/n$n.yaml" > "$work/n$n.log" 2>&1 &
  pids+=($!)
  eval "node$n=$!"
done
for n in 1 2; do
  for _ in $(seq 100); do curl -sf "127.0.0.1:1848$n/readyz" > /dev/null && break; sleep 0.1; done
done
# both nodes see each other (and Redis settled) before the room is placed
for _ in $(seq 100); do
  [ "$(curl -s 127.0.0.1:18481/metrics | awk '/^sluice_cluster_nodes /{print $2}')" = "2" ] && break; sleep 0.1
done
sleep 3.5
"$bin/sluice-loadgen" --url "ws://127.0.0.1:18481/ws" --rooms 1 --publishers-per-room "$publishers" \
  --duration-s "$duration" --ramp-per-second "${LOAD_RAMP:-50}" --json "$@" > "$work/loadgen.json" 2> "$work/loadgen.err" &
loadgen=$!
sleep "$(python3 -c "print($duration*0.4)")"
snap() { for n in 1 2; do curl -s "127.0.0.1:1848$n/metrics" > "$work/m$1-n$n"; done; }
cpu() { echo "$(cut -d' ' -f14,15 /proc/$node1/stat) $(cut -d' ' -f14,15 /proc/$node2/stat)"; }
snap 1; c1=$(cpu); t1=$(date +%s.%N)
sleep "$(python3 -c "print($duration*0.5)")"
snap 2; c2=$(cpu); t2=$(date +%s.%N)
wait $loadgen || true
python3 - "$work" "$c1" "$c2" "$t1" "$t2" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
work, c1, c2, t1, t2, tck = sys.argv[1:]
def parse(path):
    out = {}
    for line in open(path):
        m = re.match(r'^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line.strip())
        if m:
            out[(m.group(1), m.group(2) or '')] = float(m.group(3))
    return out
dt = float(t2) - float(t1)
def delta(node, name, labels=''):
    a, b = parse(f'{work}/m1-{node}'), parse(f'{work}/m2-{node}')
    return b.get((name, labels), 0) - a.get((name, labels), 0)
def level(node, name):
    return parse(f'{work}/m2-{node}').get((name, ''), 0)
sent = {n: delta(n, 'sluice_packets_sent_total') for n in ('n1', 'n2')}
relay = {n: sum(v for (k, l), v in parse(f'{work}/m2-{n}').items() if k == 'sluice_cluster_relay_frames_total' and 'event="sent"' in l)
            - sum(v for (k, l), v in parse(f'{work}/m1-{n}').items() if k == 'sluice_cluster_relay_frames_total' and 'event="sent"' in l)
         for n in ('n1', 'n2')}
a, b = [list(map(int, c.split())) for c in (c1, c2)]
cpu = [(b[0] + b[1] - a[0] - a[1]) / int(tck), (b[2] + b[3] - a[2] - a[3]) / int(tck)]
total = sent['n1'] + sent['n2']
d = json.load(open(f'{work}/loadgen.json'))
delay = d.get('delay_ms') or {}
print(json.dumps({
    'sessions': {'n1': level('n1', 'sluice_sessions'), 'n2': level('n2', 'sluice_sessions')},
    'sent_pps': {n: round(v / dt) for n, v in sent.items()},
    'forwarded_pps': round(total / dt),
    'relay_frames_pps': {n: round(v / dt) for n, v in relay.items()},
    'server_cpu_cores': [round(c / dt, 3) for c in cpu],
    'server_us_per_sent_packet': round(sum(cpu) / total * 1e6, 2) if total else None,
    'loadgen_failed': d.get('failed'), 'loss_percent': round(d.get('loss_percent', 0), 3),
    'decrypt_failures': d.get('decrypt_failures'),
    'loadgen_delay_p50_ms': delay.get('p50'), 'loadgen_delay_p99_ms': delay.get('p99'),
}))
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
