#!/bin/sh
# Coverage-guided fuzzing of every parser of outside input (notes/README-fuzz.md):
# the libFuzzer targets in native/couch_pgp_nif/fuzz/, one at a time, FUZZ_SECONDS each,
# then the Erlang PropEr garbage properties (test/couch_pgp_fuzz_tests.erl) with
# FUZZ_NUMTESTS times their default counts. Prints one table; exits 1 on any finding.
#
#   FUZZ_SECONDS   seconds per Rust target            (default 60)
#   FUZZ_TARGETS   space-separated subset             (default: all of `cargo fuzz list`)
#   FUZZ_NUMTESTS  multiplier of the PropEr counts    (default 20; 0 skips the Erlang part)
#   FUZZ_RSS_MB    libFuzzer -rss_limit_mb            (default 2048)
#   FUZZ_TIMEOUT   libFuzzer -timeout, seconds/input  (default 10)
#   FUZZ_SANITIZER cargo fuzz --sanitizer             (default none, see README-fuzz.md)
#
# cargo-fuzz wants nightly flags (-Zsanitizer, -Cpasses); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them. Corpora grow in fuzz/corpus/<target>/ (not committed; seeded from
# examples/fuzz_seeds.rs every run), crashes land in fuzz/artifacts/<target>/.
set -eu
cd "$(dirname "$0")/../native/couch_pgp_nif"
SECONDS_PER=${FUZZ_SECONDS:-60}
NUMTESTS=${FUZZ_NUMTESTS:-20}
RSS=${FUZZ_RSS_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-10}
SAN=${FUZZ_SANITIZER:-none}
LOCK=/tmp/couch_pgp-build.lock
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 2; }

flock "$LOCK" cargo run -q --release --locked --no-default-features --features crypto-nettle \
    --example fuzz_seeds -- fuzz/corpus
flock "$LOCK" cargo fuzz build -O -s "$SAN" >/dev/null
TARGETS=${FUZZ_TARGETS:-$(cargo fuzz list)}
BIN=fuzz/target/x86_64-unknown-linux-gnu/release
LOGS=fuzz/logs
mkdir -p "$LOGS"

rows=""
failed=0
for t in $TARGETS; do
    mkdir -p "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | grep -c -E '^(crash|timeout|oom|leak)-' || true)
    start=$(date +%s)
    "$BIN/$t" -max_total_time="$SECONDS_PER" -rss_limit_mb="$RSS" -timeout="$TIMEOUT" \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t" \
        >"$LOGS/$t.log" 2>&1 || true
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
    after=$(ls "fuzz/artifacts/$t" | grep -c -E '^(crash|timeout|oom|leak)-' || true)
    count() { ls "fuzz/artifacts/$t" | grep -c "^$1-" || true; }
    found=$((after - before))
    [ "$found" -eq 0 ] || failed=1
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    rows="$rows$(printf '%-16s %12s %6ss %9s %6s %5s %5s %7s' "$t" "${execs:-?}" "$secs" \
        "$(( ${execs:-0} / (secs > 0 ? secs : 1) ))" "$(count crash)" "$(count timeout)" \
        "$(count oom)" "$corpus")
"
done

erl=""
if [ "$NUMTESTS" -gt 0 ]; then
    cd ../..
    start=$(date +%s)
    if FUZZ_NUMTESTS="$NUMTESTS" rebar3 eunit --module=couch_pgp_fuzz_tests >_build/fuzz-eunit.log 2>&1; then
        erl="PropEr (x$NUMTESTS): passed in $(( $(date +%s) - start ))s"
    else
        erl="PropEr (x$NUMTESTS): FAILED, see _build/fuzz-eunit.log"; failed=1
    fi
fi

echo
printf '%-16s %12s %7s %9s %6s %5s %5s %7s\n' target executions time exec/s crash hang oom corpus
printf '%s' "$rows"
echo "(crash/hang/oom: artifacts in fuzz/artifacts/<target>/, all runs; -rss_limit_mb=$RSS -timeout=$TIMEOUT, sanitizer $SAN)"
[ -z "$erl" ] || echo "$erl"
exit $failed
