#!/usr/bin/env bash
# One measured load run: the release server on CPU 0 with one media worker, the load
# generator on CPU 1, loopback only. Prints forwarded packets/s, server CPU per forwarded
# packet, memory per participant, the server's forwarding delay (sluice_forward_delay_seconds)
# and the load generator's view (loss, one-way delay, each joiner's time from the start of
# its join to its first media packet), measured over the steady part of the run (from 40 %
# to 90 % of it; time to first media over the whole run).
#
#   scripts/load.sh ROOMS PUBLISHERS_PER_ROOM [sluice-loadgen options...]
#   e.g. scripts/load.sh 20 10 --decrypt-every 16
#   LOAD_PARTICIPANTS_PER_ROOM=600 scripts/load.sh 1 1 --subscribers-per-room 500   (a webinar)
#   LOAD_WORKERS=2 LOAD_ROOM_WORKER_PARTICIPANTS=50 LOAD_SERVER_CPUS=0,1 LOAD_LOADGEN_CPUS=0,1 \
#     scripts/load.sh 1 8 --subscribers-per-room 92          (a room of 100 spanning two workers)
#
# Build first: cargo build --release -p sluice -p sluice-loadgen
set -euo pipefail
rooms=$1; publishers=$2; shift 2
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
duration="${LOAD_DURATION_S:-20}"
http_port="${LOAD_HTTP_PORT:-18480}"; media_port="${LOAD_MEDIA_PORT:-41400}"
work=$(mktemp -d); trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/bench.yaml" <<YAML
http: { listen: "127.0.0.1:$http_port" }
media: { listen: "127.0.0.1:$media_port", workers: ${LOAD_WORKERS:-1}, announce: ["127.0.0.1"], room_worker_participants: ${LOAD_ROOM_WORKER_PARTICIPANTS:-100} }
limits:
  participants_per_room: ${LOAD_PARTICIPANTS_PER_ROOM:-64}
  sessions_per_source_ip: 100000
  handshakes_in_flight: 100000
  signaling_messages_per_second: 1000
log: { level: warn }
YAML
metrics() { curl -s "127.0.0.1:$http_port/metrics"; }
nice -n -10 taskset -c "${LOAD_SERVER_CPUS:-0}" "$bin/sluice" --config "$work/bench.yaml" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do metrics > /dev/null 2>&1 && break; sleep 0.1; done
rss_before=$(awk '/VmRSS/{print $2}' /proc/$server/status)
nice -n -10 taskset -c "${LOAD_LOADGEN_CPUS:-1}" "$bin/sluice-loadgen" --url "ws://127.0.0.1:$http_port/ws" \
  --rooms "$rooms" --publishers-per-room "$publishers" --duration-s "$duration" \
  --ramp-per-second "${LOAD_RAMP:-100}" --json "$@" > "$work/loadgen.json" 2> "$work/loadgen.err" &
loadgen=$!
sleep "$(python3 -c "print($duration*0.4)")"
metrics > "$work/m1"; stat1=$(cut -d' ' -f14,15 /proc/$server/stat); t1=$(date +%s.%N)
sleep "$(python3 -c "print($duration*0.5)")"
metrics > "$work/m2"; stat2=$(cut -d' ' -f14,15 /proc/$server/stat); t2=$(date +%s.%N)
rss_full=$(awk '/VmRSS/{print $2}' /proc/$server/status)
wait $loadgen || true
python3 - "$work" "$stat1" "$stat2" "$t1" "$t2" "$rss_before" "$rss_full" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
work, s1, s2, t1, t2, rb, rf, tck = sys.argv[1:]
def parse(path):
    out = {}
    for line in open(path):
        m = re.match(r'^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line.strip())
        if m:
            out[(m.group(1), m.group(2) or '')] = float(m.group(3))
    return out
m1, m2 = parse(f'{work}/m1'), parse(f'{work}/m2')
def delta(name, labels=''):
    return m2.get((name, labels), 0) - m1.get((name, labels), 0)
dt = float(t2) - float(t1)
sent = delta('sluice_packets_sent_total')
cpu = sum(map(int, s2.split())) - sum(map(int, s1.split()))
cpu_s = cpu / int(tck)
participants = m2.get(('sluice_participants', ''), 0)
buckets = sorted((float(re.search(r'le="([^"]+)"', k[1]).group(1).replace('+Inf', 'inf')), delta(*k))
                 for k in m2 if k[0] == 'sluice_forward_delay_seconds_bucket')
def quantile(q):
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return f'<= {le * 1000:g} ms'
    return 'n/a'
def within(limit):
    total = buckets[-1][1] if buckets else 0
    inside = max((count for le, count in buckets if le <= limit), default=0)
    return round(100 * inside / total, 2) if total else None
d = json.load(open(f'{work}/loadgen.json'))
delay = d.get('delay_ms') or {}
first = d.get('first_media_ms') or {}
print(json.dumps({
    'participants': participants,
    'forwarded_pps': round(sent / dt),
    'server_cpu_cores': round(cpu_s / dt, 3),
    'relayed_pps': round(delta('sluice_relay_packets_total', '{path="media_out"}') / dt),
    'relay_dropped': delta('sluice_relay_packets_total', '{path="dropped_queue_full"}'),
    'server_us_per_forwarded_packet': round(cpu_s / sent * 1e6, 2) if sent else None,
    'rss_kib_per_participant': round((int(rf) - int(rb)) / participants) if participants else None,
    'server_forward_delay_p50': quantile(0.5), 'server_forward_delay_p99': quantile(0.99),
    'server_forward_delay_within_2ms_percent': within(0.002),
    'loadgen_failed': d.get('failed'), 'loss_percent': round(d.get('loss_percent', 0), 3),
    'decrypt_failures': d.get('decrypt_failures'),
    'loadgen_delay_p50_ms': delay.get('p50'), 'loadgen_delay_p99_ms': delay.get('p99'),
    'first_media_joiners': first.get('joiners'),
    'first_media_p50_ms': first.get('p50'), 'first_media_p99_ms': first.get('p99'),
}))
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
