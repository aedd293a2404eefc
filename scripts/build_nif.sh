#!/bin/sh
# Builds the NIF crate (release) and installs the library as priv/couch_pgp_nif.so.
# CARGO_FEATURES picks another crypto backend, e.g. CARGO_FEATURES=crypto-rust (see README).
set -eu
cd "$(dirname "$0")/.."
crate=native/couch_pgp_nif
if [ -n "${CARGO_FEATURES:-}" ]; then
    set -- --no-default-features --features "nif,$CARGO_FEATURES"
fi
cargo build --quiet --release --locked --manifest-path "$crate/Cargo.toml" "$@"
mkdir -p priv
cp "$crate/target/release/libcouch_pgp_nif.so" priv/couch_pgp_nif.so.tmp
mv priv/couch_pgp_nif.so.tmp priv/couch_pgp_nif.so
