#!/bin/sh
# Installs everything couch_pgp needs on a Debian 12 machine that has only Rust:
# Erlang/OTP 25 and rebar3, the C libraries sequoia builds against, the interop peers
# (gpg, sqop, sq, gosop), Chromium for the browser tests, what a CouchDB 3.5 release needs to
# run (libicu72, libssl3; curl and xz to fetch and unpack), and the Node packages (the browser
# client's build, OpenPGP.js tests, playwright-core). Safe to run again.
set -eu
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

PACKAGES="erlang-nox erlang-dev erlang-src erlang-eunit erlang-tools erlang-crypto \
  erlang-dialyzer erlang-proper erlang-proper-dev rebar3 \
  nettle-dev libgmp-dev libclang-dev clang pkg-config libssl-dev \
  gnupg sqop sq gosop make chromium \
  libicu72 libssl3 curl xz-utils"
# Node.js: the machine's own (v20 here) if present; Debian's otherwise.
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Node packages, exactly as locked: the browser client (OpenPGP.js, esbuild, TypeScript),
# OpenPGP.js for interop tests and benchmarks, the integration suite (playwright-core drives
# Debian's chromium; it never downloads a browser).
for dir in client test/interop/openpgpjs bench/openpgpjs test/integration; do
    # (again when the lock file changed since: npm keeps its copy in node_modules/.package-lock.json)
    if [ -f "$dir/package-lock.json" ] && { [ ! -f "$dir/node_modules/.package-lock.json" ] \
            || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; }; then
        (cd "$dir" && npm ci --silent --no-audit --no-fund)
    fi
done
echo "setup: done"
