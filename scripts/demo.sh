#!/bin/sh
# `make demo`: the seed's workflow against a real CouchDB when scripts/with_couchdb.sh found
# one, else the in-process version and how to get the full one.
set -eu
cd "$(dirname "$0")/.."
if [ -n "${COUCHDB_HOME:-}" ]; then
    COUCH_PGP_IT_PREBUILT=1 exec node examples/couchdb_demo.mjs "$@"
fi
echo "demo: no CouchDB release found; running the in-process workflow instead."
echo "demo: for the full demo in CouchDB, set COUCHDB_HOME=<a CouchDB 3.x release> (or install"
echo "demo: one at /opt/couchdb, or keep ../shared/couchdb/ beside this repository) and run make demo again."
echo
make --no-print-directory demo-local
