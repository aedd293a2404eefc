#!/bin/sh
# Runs a command with COUCHDB_HOME naming a real CouchDB 3.x release, found in this order:
#
#   1. COUCHDB_HOME, if set (it must be a release: bin/couchdb and lib/couch-*/include);
#   2. /opt/couchdb, if it is a release;
#   3. the release tarball beside the repository (../shared/couchdb/couchdb-*.tar.xz, or
#      COUCH_PGP_COUCHDB_TARBALL), checked against the SHA256SUMS next to it and unpacked
#      into a temporary directory that is removed when the command ends.
#
#   sh scripts/with_couchdb.sh make test-all
#
# The release found is never modified: the tests and the demo copy it before installing.
# With nothing found, the command still runs without COUCHDB_HOME (the integration suite then
# reports SKIPPED, loudly), except under CI=true, where that is a failure: a green CI run
# must mean the plugin ran in a real CouchDB.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "with_couchdb: $*" >&2; }
die() { echo "with_couchdb: error: $*" >&2; exit 1; }
is_release() { [ -x "$1/bin/couchdb" ] && ls "$1"/lib/couch-*/include/couch_db.hrl >/dev/null 2>&1; }
in_ci() { case "${CI:-}" in ""|false|0) return 1 ;; *) return 0 ;; esac; }

[ $# -ge 1 ] || { echo "usage: sh scripts/with_couchdb.sh <command> [args...]" >&2; exit 2; }

TMP=""
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if [ -n "${COUCHDB_HOME:-}" ]; then
    is_release "$COUCHDB_HOME" ||
        die "COUCHDB_HOME=$COUCHDB_HOME is not a CouchDB release (no bin/couchdb or lib/couch-*/include)"
    say "CouchDB from COUCHDB_HOME: $COUCHDB_HOME"
elif is_release /opt/couchdb; then
    COUCHDB_HOME=/opt/couchdb
    say "CouchDB from /opt/couchdb"
else
    TARBALL=${COUCH_PGP_COUCHDB_TARBALL:-}
    if [ -z "$TARBALL" ]; then
        for f in "$REPO"/../shared/couchdb/couchdb-*.tar.xz; do
            [ -f "$f" ] && TARBALL=$f && break
        done
    fi
    if [ -n "$TARBALL" ]; then
        [ -f "$TARBALL" ] || die "no tarball at $TARBALL"
        SUMS="$(dirname "$TARBALL")/SHA256SUMS"
        [ -f "$SUMS" ] || die "$TARBALL has no SHA256SUMS beside it; refusing an unchecked release"
        want=$(awk -v f="$(basename "$TARBALL")" '$2 == f || $2 == "*" f { print $1 }' "$SUMS")
        [ -n "$want" ] || die "$SUMS has no line for $(basename "$TARBALL")"
        got=$(sha256sum "$TARBALL" | cut -d' ' -f1)
        [ "$got" = "$want" ] || die "$TARBALL: SHA-256 $got, SHA256SUMS says $want"
        TMP=$(mktemp -d "${TMPDIR:-/tmp}/couch_pgp-release.XXXXXX")
        tar -xJf "$TARBALL" -C "$TMP" || die "could not unpack $TARBALL"
        COUCHDB_HOME="$TMP/couchdb"
        is_release "$COUCHDB_HOME" || die "$TARBALL did not unpack to a CouchDB release at couchdb/"
        say "CouchDB from $TARBALL (SHA-256 checked), unpacked for this run into $COUCHDB_HOME"
    elif in_ci; then
        die "CI: no CouchDB release (COUCHDB_HOME unset, no /opt/couchdb, no ../shared/couchdb/*.tar.xz); the integration suite must not skip in CI"
    else
        say "SKIPPING what needs CouchDB: no release at COUCHDB_HOME (unset), /opt/couchdb or ../shared/couchdb/*.tar.xz"
        unset COUCHDB_HOME
        export COUCH_PGP_NO_COUCHDB=1
        "$@"
        exit $?
    fi
fi

export COUCHDB_HOME
# Not exec: the trap must remove the unpacked release when the command ends.
set +e
"$@"
rc=$?
exit $rc
