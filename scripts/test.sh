#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian machine, then runs
# every tier: formatting and lints, the Rust tests (unit, virtual-time matrix, interop with
# OpenSSL and the `dtls` crate, end to end), and the headless Chromium and Firefox ESR call tests.
#
#   scripts/test.sh            everything
#   SLUICE_SKIP_BROWSER=1 ...  everything but the browser tier
#   SLUICE_FUZZ_SECONDS=N ...  seconds per fuzz target (default 5; 0 skips the fuzz tier)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing system packages (openssl, redis-server, chromium, firefox-esr) and npm packages"
need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The cluster tests start their own redis-server on a free loopback port.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ -z "${SLUICE_SKIP_BROWSER:-}" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-liberation)
  [ -x /usr/bin/firefox-esr ] || need_apt+=(firefox-esr)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ -z "${SLUICE_SKIP_BROWSER:-}" ]; then
  bash tests/browser/install.sh
fi

# Here redis-server is installed: a cluster test that cannot find it fails, never skips.
export SLUICE_REQUIRE_REDIS=1

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "Rust tests (unit, DTLS matrix, interop, end to end)"
cargo test --workspace

if [ -z "${SLUICE_SKIP_BROWSER:-}" ]; then
  step "browser tests (headless Chromium and Firefox ESR)"
  cargo build --release --quiet -p sluice -p sluice-netsim -p sluice-loadgen
  target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
  SLUICE_BIN="$target_dir/release/sluice" node --test tests/browser/
fi

fuzz_seconds="${SLUICE_FUZZ_SECONDS:-5}"
if [ "$fuzz_seconds" != 0 ]; then
  step "fuzzing, ${fuzz_seconds} s per target"
  bash scripts/fuzz.sh all "$fuzz_seconds"
fi

step "all tiers passed"
