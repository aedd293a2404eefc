#!/bin/sh
# Installs couch_pgp as a plugin into a built CouchDB 3.x release (usually via
# `make install COUCHDB_HOME=<release>`, which runs `rebar3 compile` first):
#
#   <release>/lib/couch_pgp-<vsn>/ebin   core beams from _build + couchdb_src/*.erl compiled
#                                         here against the release's headers
#   <release>/lib/couch_pgp-<vsn>/priv   priv/*.so, priv/www (the browser client and demo
#                                         page) and couchdb_src/priv/*
#   <release>/releases/sys.config        couch_epi plugin list + couch_pgp_epi (the original
#                                         is backed up once to sys.config.couch_pgp-backup)
#   <release>/etc/default.d/couch_pgp.ini  plugin defaults (secrets belong in local.ini)
#
# Safe to run again: files are only rewritten when their content changes, and a second run
# changes nothing. An older lib/couch_pgp-* of another version is removed. The node must be
# restarted to pick up changes. Undo with scripts/uninstall.sh.
#
# Environment: COUCH_PGP_COUCHDB_SRC  directory of the CouchDB-dependent sources
#                                     (default: couchdb_src in this repository)
#              COUCH_PGP_EBIN         core ebin (default: _build/default/lib/couch_pgp/ebin)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOL="$REPO/scripts/couch_pgp_release.escript"
EPI=couch_pgp_epi

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

[ $# -eq 1 ] || { echo "usage: sh scripts/install.sh <couchdb-release-dir>" >&2; exit 2; }
[ -d "$1" ] || die "$1 is not a directory"
REL=$(cd "$1" && pwd)
SRC=${COUCH_PGP_COUCHDB_SRC:-$REPO/couchdb_src}
EBIN=${COUCH_PGP_EBIN:-$REPO/_build/default/lib/couch_pgp/ebin}

# --- Is this a CouchDB release we can build against? -----------------------------------
first() { for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done; return 1; }
HRL=$(first "$REL"/lib/couch-*/include/couch_db.hrl) ||
    die "$REL is not a CouchDB release with headers: no lib/couch-*/include/couch_db.hrl"
first "$REL"/lib/couch_epi-*/ebin/couch_epi.app >/dev/null ||
    die "$REL has no lib/couch_epi-*/ebin/couch_epi.app (CouchDB 3.x with couch_epi needed)"
[ -f "$REL/releases/sys.config" ] || die "$REL has no releases/sys.config"
[ -d "$REL/etc" ] || die "$REL has no etc/ directory"
[ -f "$REL/releases/start_erl.data" ] || die "$REL has no releases/start_erl.data"

# Beams and the NIF are built by the local Erlang; the release's runtime must not be older.
REL_ERTS=$(cut -d' ' -f1 "$REL/releases/start_erl.data")
OUR_ERTS=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(version)]), halt().')
if [ "${OUR_ERTS%%.*}" -gt "${REL_ERTS%%.*}" ]; then
    die "local Erlang (erts $OUR_ERTS) is newer than the release's (erts $REL_ERTS); build with a matching OTP"
fi

# --- What we install --------------------------------------------------------------------
[ -f "$EBIN/couch_pgp.app" ] || die "$EBIN/couch_pgp.app missing; run 'rebar3 compile' first"
[ -f "$REPO/priv/couch_pgp_nif.so" ] || die "priv/couch_pgp_nif.so missing; run 'rebar3 compile' first"
[ -f "$REPO/priv/www/couch_pgp.js" ] || die "priv/www/couch_pgp.js missing; run 'make build' first"
[ -d "$SRC" ] || die "$SRC missing (CouchDB-side sources)"
[ -f "$SRC/$EPI.erl" ] || die "$SRC/$EPI.erl missing; refusing to register a plugin that cannot load"
[ -f "$SRC/couch_pgp.ini" ] || die "$SRC/couch_pgp.ini missing"
VSN=$(escript "$TOOL" vsn "$EBIN/couch_pgp.app")
[ -n "$VSN" ] || die "cannot read vsn from $EBIN/couch_pgp.app"
APP="couch_pgp-$VSN"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/couch_pgp-install.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT INT TERM
mkdir -p "$STAGE/$APP/ebin" "$STAGE/$APP/priv"
cp "$EBIN"/* "$STAGE/$APP/ebin/"
cp "$REPO"/priv/*.so "$STAGE/$APP/priv/"
cp -R "$REPO/priv/www" "$STAGE/$APP/priv/www"
if [ -d "$SRC/priv" ]; then
    cp -R "$SRC/priv/." "$STAGE/$APP/priv/"
fi

# Compile the CouchDB-side modules against the release, any warning an error (include_lib("couch/include/...")
# resolves through ERL_LIBS). Nothing in the release is touched if this fails.
set -- "$SRC"/*.erl
ERL_LIBS="$REL/lib" erlc -o "$STAGE/$APP/ebin" -pa "$STAGE/$APP/ebin" \
    -I "$SRC" -I "$REPO/erlang_src" +debug_info +warnings_as_errors +warn_missing_spec "$@" ||
    die "compiling $SRC/*.erl against $REL failed"
escript "$TOOL" app-modules "$STAGE/$APP/ebin/couch_pgp.app" "$STAGE/$APP/ebin" >/dev/null
escript "$TOOL" check-epi "$STAGE/$APP/ebin" "$REL" "$EPI" >/dev/null ||
    die "$EPI failed the plugin check; not installing"
find "$STAGE/$APP" -type d -exec chmod 755 {} +
find "$STAGE/$APP" -type f -exec chmod 644 {} +
find "$STAGE/$APP/priv" -type f -name '*.so' -exec chmod 755 {} +

# --- Copy into the release, touching only what differs -----------------------------------
CHANGED=0
put() { # put <staged file> <destination>
    if [ ! -f "$2" ] || ! cmp -s "$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        cp "$1" "$2.couch_pgp-tmp"
        chmod "$(stat -c %a "$1")" "$2.couch_pgp-tmp"
        mv -f "$2.couch_pgp-tmp" "$2"
        CHANGED=1
    fi
}

for old in "$REL"/lib/couch_pgp-*; do
    if [ -e "$old" ] && [ "$old" != "$REL/lib/$APP" ]; then
        rm -rf "$old"
        say "removed $(basename "$old")"
        CHANGED=1
    fi
done

DEST="$REL/lib/$APP"
mkdir -p "$DEST"
# Files and directories in the release copy that are no longer staged.
(cd "$DEST" && find . -mindepth 1 -depth) | while IFS= read -r p; do
    if [ ! -e "$STAGE/$APP/$p" ] || { [ -d "$DEST/$p" ] && [ ! -d "$STAGE/$APP/$p" ]; }; then
        rm -rf "${DEST:?}/$p"
        echo "x" >"$STAGE/.removed"
    fi
done
[ -f "$STAGE/.removed" ] && CHANGED=1
(cd "$STAGE/$APP" && find . -type f) >"$STAGE/.files"
while IFS= read -r p; do
    put "$STAGE/$APP/$p" "$DEST/$p"
done <"$STAGE/.files"
find "$DEST" -type d -exec chmod 755 {} +

cp "$SRC/couch_pgp.ini" "$STAGE/couch_pgp.ini"
chmod 644 "$STAGE/couch_pgp.ini"
put "$STAGE/couch_pgp.ini" "$REL/etc/default.d/couch_pgp.ini"

# Register last, so the plugin list never names modules that are not in place yet.
REG=$(escript "$TOOL" register "$REL" "$EPI") || die "could not update releases/sys.config"
case "$REG" in *"already registered"*) ;; *) CHANGED=1 ;; esac

if [ "$CHANGED" -eq 1 ]; then
    say "installed $APP into $REL ($REG); restart CouchDB to load it"
else
    say "$APP already installed in $REL; nothing changed"
fi
