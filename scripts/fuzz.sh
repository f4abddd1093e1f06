#!/usr/bin/env bash
# Runs Sluice's cargo-fuzz targets (fuzz/fuzz_targets/*.rs).
#
#   scripts/fuzz.sh TARGET SECONDS   run one target for SECONDS
#   scripts/fuzz.sh all SECONDS      run every target in turn (CI: scripts/fuzz.sh all 10)
#   scripts/fuzz.sh list             list the targets
#
# Corpora grow in fuzz/corpus/<target> (git-ignored); every run also reads the committed
# seeds in fuzz/seeds/<target> (realistic inputs: a Chrome STUN check, the Chromium
# ClientHello, RTP/RTCP packets, Chrome SDP answers, join messages). A crash stops the run
# with a non-zero exit status and the path of the input that reproduces it
# (fuzz/artifacts/<target>/crash-*); replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>   (from fuzz/)
#
# Toolchain: cargo fuzz passes nightly-only rustc flags (-Z sanitizer, sancov passes). This
# machine has stable Rust only, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them; it is
# set for the cargo fuzz commands below and nowhere else. AddressSanitizer works here and is
# the default; FUZZ_SANITIZER=none turns it off (about twice the executions per second).
#
# Environment: FUZZ_SANITIZER (address|none, default address), FUZZ_ARGS (extra libFuzzer
# flags). One libFuzzer process at a time (the single-job default): the machine is shared.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "fuzz.sh: installing cargo-fuzz" >&2
        cargo install cargo-fuzz --locked
    fi
}

targets() {
    (cd "$FUZZ" && cargo fuzz list)
}

run_one() {
    local target="$1" seconds="$2"
    local corpus="$FUZZ/corpus/$target" seeds="$FUZZ/seeds/$target"
    local log
    mkdir -p "$corpus"
    log="$(mktemp "${TMPDIR:-/tmp}/sluice-fuzz-$target.XXXXXX")"
    echo "== fuzz $target for ${seconds}s (sanitizer: $SANITIZER)"
    local inputs=("$corpus")
    [ -d "$seeds" ] && inputs+=("$seeds")
    set +e
    (cd "$FUZZ" && cargo fuzz run --sanitizer "$SANITIZER" "$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        ${FUZZ_ARGS:-}) 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|==[0-9]+==|thread .* panicked|Done )' 
    local status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        echo "fuzz.sh: $target FAILED (exit $status); full log: $log" >&2
        grep -E 'panicked at|Test unit written to|SUMMARY' "$log" >&2 || true
        local artifact
        artifact="$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/Test unit written to //')"
        [ -n "$artifact" ] && echo "fuzz.sh: reproducer: $artifact" >&2
        return 1
    fi
    rm -f "$log"
}

[ $# -ge 1 ] || usage
ensure_cargo_fuzz
case "$1" in
    list) targets ;;
    all)
        [ $# -eq 2 ] || usage
        (cd "$FUZZ" && cargo fuzz build --sanitizer "$SANITIZER")
        failed=()
        for t in $(targets); do
            run_one "$t" "$2" || failed+=("$t")
        done
        if [ ${#failed[@]} -ne 0 ]; then
            echo "fuzz.sh: crashes in: ${failed[*]}" >&2
            exit 1
        fi
        ;;
    -h|--help) usage ;;
    *)
        [ $# -eq 2 ] || usage
        grep -qx -- "$1" <<<"$(targets)" || { echo "fuzz.sh: no target '$1' (see: scripts/fuzz.sh list)" >&2; exit 2; }
        run_one "$1" "$2"
        ;;
esac
