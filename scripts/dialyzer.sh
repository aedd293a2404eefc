#!/bin/sh
# Dialyzer over the core and couchdb_src/, the latter compiled against the CouchDB release at
# COUCHDB_HOME (its headers through ERL_LIBS, its applications in the PLT). Without a release
# (outside CI only: scripts/with_couchdb.sh refuses that under CI=true) only the core is checked.
# Warnings are chosen in rebar.config; any warning fails.
set -eu
cd "$(dirname "$0")/.."
if [ -z "${COUCHDB_HOME:-}" ]; then
    echo "dialyzer: SKIPPED couchdb_src/ (no CouchDB release); checking the core only"
    exec rebar3 dialyzer
fi
ERL_LIBS="$COUCHDB_HOME/lib" exec rebar3 as couchdb dialyzer
