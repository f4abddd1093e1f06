#!/usr/bin/env bash
# Resilience scenarios of docs/resilience.md, long form. Needs root (network namespaces).
#
#   scripts/resilience.sh scenario1   seed: 6 browsers, one on 225k/5M/70 ms at 0/5/15 % loss
#                                     and 30 % during its first 10 s
#   scripts/resilience.sh scenario2   handshake storm: 6 browsers join at once, one link 30 %
#                                     loss, dtls.max_datagram_size 576, both DTLS roles
#   scripts/resilience.sh scenario3   50 sluice-loadgen clients at once through the relay at
#                                     10 % and 30 % loss, handshake percentiles
#   scripts/resilience.sh all         the three
#   scripts/resilience.sh features    scenario 1 at 15 % loss with the subscriber loss
#                                     recovery as configured and without audio RED
#                                     (REPEAT=N runs each, default 3)
#   scripts/resilience.sh fec         scenario 1 at 15 % loss with video FEC toward lossy
#                                     subscribers on and off, alternated (REPEAT=N runs
#                                     each, default 3)
#   scripts/resilience.sh downlink    6 browsers publishing simulcast, one behind a 1 Mbit/s
#                                     downlink, with the server's adaptation on and off
#                                     (REPEAT=N runs each, default 3)
#
# Every scenario runs with the server's DTLS recovery on and again with `dtls.recovery:
# false` (RECOVERY=on|off|both, default both). Results: tests/resilience/results/<time>/.
# Binaries come from $CARGO_TARGET_DIR (default target/)/release, built here if missing or
# stale (SKIP_BUILD=1 to use them as they are).
set -euo pipefail
cd "$(dirname "$0")/.."

which="${1:-all}"
recovery="${RECOVERY:-both}"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release"
stamp="$(date -u +%Y-%m-%dT%H-%M-%SZ)"
out="tests/resilience/results/$stamp"

case "$which" in scenario1 | scenario2 | scenario3 | all | features | downlink | fec) ;; *)
  echo "usage: $0 scenario1|scenario2|scenario3|all|features|downlink|fec" >&2
  exit 2
  ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "resilience.sh: needs root (network namespaces, veth, tc); CI runs as root" >&2
  exit 1
fi

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --quiet -p sluice -p sluice-netsim -p sluice-loadgen
fi
export SLUICE_BIN="$bin/sluice" SLUICE_RELAY_BIN="$bin/sluice-netsim-relay"
mkdir -p "$out"
echo "results in $out"
status=0

if [ "$which" = scenario1 ] || [ "$which" = scenario2 ] || [ "$which" = all ]; then
  browser_which="$which"
  [ "$which" = all ] && browser_which=all
  node tests/resilience/browser.js "$browser_which" --recovery "$recovery" --out "$out/browser" || status=1
fi
if [ "$which" = features ] || [ "$which" = downlink ] || [ "$which" = fec ]; then
  node tests/resilience/browser.js "$which" --repeat "${REPEAT:-3}" --out "$out/browser" || status=1
fi

if [ "$which" = scenario3 ] || [ "$which" = all ]; then
  bash tests/resilience/scenario3.sh "$out/scenario3" "$recovery" || status=1
fi
echo "done: $out (exit $status: 1 when a run with recovery on failed)"
exit "$status"
