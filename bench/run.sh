#!/bin/sh
# couch_pgp benchmark: couch_pgp beside OpenPGP.js, gpg, sqop and an Erlang crypto ceiling,
# all measured in this run. See bench/README.md.
#
#   sh bench/run.sh            full table (~4-5 min on 2 cores)
#   QUICK=1 sh bench/run.sh    smoke run, same rows, short budgets (< 1 min)
#   sh bench/run.sh backends   rebuilds the NIF with each crypto backend (nettle, openssl,
#                              rust) under /tmp and compares the key rows in 3 alternating
#                              rounds (BENCH_ROUNDS; ~5 min, plus ~6 min of cold builds)
#
# Needs `rebar3 compile` (make build) first, and `sh scripts/setup.sh` for the peers.
# Measurements run under `nice -n $BENCH_NICE` (default 10: the machine may be shared).
# Progress goes to stderr, the table to stdout. BENCH_KEEP=1 keeps the raw TSV results.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-all}
NICE="nice -n ${BENCH_NICE:-10}"
EBIN=$ROOT/_build/default/lib/couch_pgp/ebin

if [ ! -f "$EBIN/couch_pgp.beam" ] || [ ! -f "$ROOT/priv/couch_pgp_nif.so" ]; then
    echo "bench: build first (rebar3 compile, or make build)" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/couch_pgp_bench.XXXXXX")
cleanup() {
    for h in "$WORK/gnupg" "$WORK/gnupg-keygen"; do
        [ -d "$h" ] && gpgconf --homedir "$h" --kill gpg-agent >/dev/null 2>&1 || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        echo "bench: raw results kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/ebin"
erlc -o "$WORK/ebin" bench/couch_pgp_bench.erl

# Schedulers that find no work sleep instead of spinning: the spinning would be counted as
# CPU time (the cpu/op column) and, on a 2-core machine, steals a core from the dirty NIF.
ERL_FLAGS="+sbwt none +sbwtdcpu none +sbwtdio none"

# erl_with EBIN_DIR FUN ARGS...: one fresh VM running couch_pgp_bench:FUN([ARGS]).
erl_with() {
    ebin=$1
    shift
    $NICE erl $ERL_FLAGS -noshell -pa "$ebin" -pa "$WORK/ebin" -run couch_pgp_bench "$@"
}

backend_of() {
    deps=$(ldd "$1" 2>/dev/null || true)
    case "$deps" in
        *libnettle*) echo "crypto-nettle (Nettle $(pkg-config --modversion nettle 2>/dev/null || echo '?'))" ;;
        *libcrypto*) echo "crypto-openssl ($(openssl version 2>/dev/null | cut -d' ' -f1-2))" ;;
        *) echo "crypto-rust (RustCrypto)" ;;
    esac
}

sequoia_version() {
    awk '/^name = "sequoia-openpgp"/ { getline; gsub(/[^0-9.]/, ""); print; exit }' \
        native/couch_pgp_nif/Cargo.lock
}

header() {
    if [ "${QUICK:-}" = 1 ]; then q=" (QUICK=1: short budgets, rough numbers)"; else q=""; fi
    echo "couch_pgp benchmark$q"
    echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"\
" (flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|sha_ni|avx2|vaes' | tr '\n' ' ' | sed 's/ $//')),"\
" $(free -g 2>/dev/null | awk '/^Mem:/ { print $2 " GiB RAM," }') load average at start: $LOAD"
    echo "versions: Erlang/OTP $(erl -noshell -eval 'io:format("~s (erts ~s)", [erlang:system_info(otp_release), erlang:system_info(version)]), halt().'),"\
" OTP crypto on $(erl -noshell -eval '[{_, _, V}] = crypto:info_lib(), io:format("~s", [V]), halt().' 2>/dev/null || echo '?')"
    echo "          couch_pgp NIF: sequoia-openpgp $(sequoia_version), $1"
    echo "          node $(node --version 2>/dev/null || echo 'n/a'), OpenPGP.js $(cat "$WORK/openpgpjs_version" 2>/dev/null || echo 'n/a'),"\
" $(gpg --version 2>/dev/null | head -1 || echo 'gpg n/a') ($(gpg --version 2>/dev/null | sed -n 2p)),"\
" $(sqop version 2>/dev/null || echo 'sqop n/a')"
}

# As in production: with RUST_BACKTRACE set, every error sequoia creates internally (some on
# normal paths: a policy check of a certificate without user ids) captures a backtrace, which
# adds ~0.1-0.2 ms to a signature or a decrypt+verify.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

case "$MODE" in
all)
    echo "bench: work dir $WORK" >&2
    erl_with "$EBIN" fixtures "$WORK"
    erl_with "$EBIN" erlang "$WORK"
    if [ -d bench/openpgpjs/node_modules/openpgp ] && command -v node >/dev/null; then
        (cd bench/openpgpjs && $NICE node bench.mjs run "$WORK")
    else
        echo "bench: bench/openpgpjs/node_modules missing (run scripts/setup.sh): OpenPGP.js skipped" >&2
    fi
    erl_with "$EBIN" cli "$WORK"
    if [ "${QUICK:-}" = 1 ]; then reps=1; kinds=bin; else reps=3; kinds="bin arm"; fi
    for kind in $kinds; do
        i=0
        while [ $i -lt $reps ]; do
            erl_with "$EBIN" mem "$WORK" "$kind"
            if [ -f "$WORK/js_mem_key.asc" ]; then
                (cd bench/openpgpjs && $NICE node --expose-gc bench.mjs mem "$WORK" "$kind")
            fi
            i=$((i + 1))
        done
    done
    # Several fresh-VM samples per kind: keep the median (report reads the last line per key).
    for f in mem.tsv openpgpjs_mem.tsv; do
        [ -f "$WORK/$f" ] || continue
        sort -t"$(printf '\t')" -k1,2 -k3,3n "$WORK/$f" | awk -F'\t' '
            { key = $1 FS $2; n[key]++; line[key, n[key]] = $0; order[key] = 1 }
            END { for (k in order) print line[k, int((n[k] + 1) / 2)] }' > "$WORK/$f.median"
        mv "$WORK/$f.median" "$WORK/$f"
    done
    echo
    header "$(backend_of priv/couch_pgp_nif.so)"
    echo
    erl_with "$EBIN" report "$WORK"
    ;;
backends)
    BASE=${TMPDIR:-/tmp}/couch_pgp_bench_backends
    mkdir -p "$BASE"
    # One snapshot of the crate for all three builds, so every backend is built from the
    # same source even if the work tree changes meanwhile; priv/ and target/ stay untouched.
    rm -rf "$BASE/crate"
    mkdir -p "$BASE/crate"
    (cd native/couch_pgp_nif && tar cf - --exclude=./target .) | (cd "$BASE/crate" && tar xf -)
    rm -rf "$BASE/ebin"
    mkdir -p "$BASE/ebin"
    erlc -o "$BASE/ebin" erlang_src/*.erl
    cp "$EBIN/couch_pgp.app" "$BASE/ebin/"
    erl_with "$EBIN" fixtures "$WORK"
    # The NIF entry points may sit behind a `nif` feature that --no-default-features drops.
    extra=""
    grep -q '^nif *=' "$BASE/crate/Cargo.toml" && extra="nif,"
    for b in nettle openssl rust; do
        echo "bench: building the NIF with crypto-$b in $BASE/target-$b" >&2
        CARGO_TARGET_DIR="$BASE/target-$b" $NICE cargo build --quiet --release --locked \
            --manifest-path "$BASE/crate/Cargo.toml" \
            --no-default-features --features "${extra}crypto-$b"
        lib="$BASE/lib-$b/couch_pgp"
        rm -rf "$lib"
        mkdir -p "$lib/ebin" "$lib/priv"
        cp "$BASE/ebin"/* "$lib/ebin/"
        cp "$BASE/target-$b/release/libcouch_pgp_nif.so" "$lib/priv/couch_pgp_nif.so"
    done
    # Rounds alternate the backends (nettle openssl rust nettle ...) so that each sees the
    # same mix of load on a shared machine; the table takes the median of the rounds.
    if [ "${QUICK:-}" = 1 ]; then rounds=1; else rounds=${BENCH_ROUNDS:-3}; fi
    r=1
    while [ $r -le "$rounds" ]; do
        for b in nettle openssl rust; do
            echo "bench: round $r/$rounds: measuring $b" >&2
            erl_with "$BASE/lib-$b/couch_pgp/ebin" backend "$WORK" "$b"
        done
        r=$((r + 1))
    done
    echo
    header "each backend below (built into $BASE)"
    echo "          nettle: $(backend_of "$BASE/lib-nettle/couch_pgp/priv/couch_pgp_nif.so");"\
" openssl: $(backend_of "$BASE/lib-openssl/couch_pgp/priv/couch_pgp_nif.so");"\
" rust: $(backend_of "$BASE/lib-rust/couch_pgp/priv/couch_pgp_nif.so") with allow-experimental-crypto,"\
" allow-variable-time-crypto"
    echo
    erl_with "$EBIN" backend_report "$WORK" nettle openssl rust
    ;;
*)
    echo "usage: sh bench/run.sh [all|backends]   (QUICK=1 for a short run)" >&2
    exit 2
    ;;
esac
