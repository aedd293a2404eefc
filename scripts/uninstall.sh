#!/bin/sh
# Removes what scripts/install.sh put into a CouchDB release (`make uninstall
# COUCHDB_HOME=<release>`): unregisters couch_pgp_epi from releases/sys.config (restoring
# sys.config.couch_pgp-backup when sys.config is unchanged since install; otherwise only our
# entry is dropped), then deletes lib/couch_pgp-* and etc/default.d/couch_pgp.ini.
# Settings you added to local.ini ([couch_pgp] secrets etc.) are left alone.
# Safe to run again. Stop or restart CouchDB afterwards.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOL="$REPO/scripts/couch_pgp_release.escript"

die() { echo "uninstall.sh: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: sh scripts/uninstall.sh <couchdb-release-dir>" >&2; exit 2; }
[ -d "$1" ] || die "$1 is not a directory"
REL=$(cd "$1" && pwd)
[ -d "$REL/releases" ] && [ -d "$REL/lib" ] || die "$REL does not look like a CouchDB release"

# Unregister first: a plugin listed without its modules would stop the node from booting.
if [ -f "$REL/releases/sys.config" ] || [ -f "$REL/releases/sys.config.couch_pgp-backup" ]; then
    REG=$(escript "$TOOL" unregister "$REL" couch_pgp_epi) || die "could not update releases/sys.config"
    echo "uninstall.sh: $REG"
fi

for d in "$REL"/lib/couch_pgp-*; do
    if [ -e "$d" ]; then
        rm -rf "$d"
        echo "uninstall.sh: removed lib/$(basename "$d")"
    fi
done
if [ -e "$REL/etc/default.d/couch_pgp.ini" ]; then
    rm -f "$REL/etc/default.d/couch_pgp.ini"
    echo "uninstall.sh: removed etc/default.d/couch_pgp.ini"
fi
echo "uninstall.sh: couch_pgp removed from $REL; restart CouchDB"
