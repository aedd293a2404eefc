#!/usr/bin/env bash
# Runs CouchDB's own Mango HTTP test suite (src/mango/test, Python/nose2), unchanged, against
# three temporary single nodes made from the same release, one after the other:
#
#   plain  the release without the plugin
#   off    couch_pgp installed, [couch_pgp] enable = false
#   on     couch_pgp installed, [couch_pgp] enable = true, no policies configured
#
# and prints, per mode: tests run, passed, failed, errors, skipped, and the tests whose
# outcome differs from the plain run. Exit status: 0 when both plugin runs have exactly the
# plain run's outcomes, 1 when they differ, 2 on a setup problem (no suite, no node, no report).
#
#   COUCHDB_SRC_TREE=~/src/couchdb                         bash scripts/couchdb_suites.sh
#   COUCHDB_GIT=/path/to/couchdb.git [COUCHDB_TAG=3.5.0]   bash scripts/couchdb_suites.sh
#
# Environment:
#   COUCHDB_SRC_TREE  a CouchDB source tree with src/mango (only read: src/mango is copied)
#   COUCHDB_GIT       or a CouchDB git directory; COUCHDB_TAG (default 3.5.0) is exported from it
#   COUCHDB_HOME      the CouchDB release (default /opt/couchdb); only ever copied, never
#                     modified (checked: a digest of its tree before and after)
#   MODES             default "plain off on" (plain first: the others are compared with it)
#   COUCH_PGP_SET     settings for the off and on nodes, "section.key=value ...", applied
#                     through the config API once the node is up. A negative control:
#                     COUCH_PGP_SET=couch_pgp.require_encryption=true must make the comparison
#                     report (nearly) every test
#   MANGO_TEST_OPTS   extra nose2 arguments, e.g. test names ("02-basic-find-test")
#   MANGO_FAIL_FAST=1 pass -F as upstream's `make mango-test` does (default: run everything,
#                     so that the three runs can be compared test by test)
#   MANGO_TIMEOUT     seconds per suite run (default 3600)
#   COUCHDB_SUITES_OUT  a directory to keep per-mode reports in (nose2 output, JUnit XML,
#                     the node's CouchDB log); by default everything is removed at exit
#   PYTHON            the Python for the venv (default python3); pip installs
#                     src/mango/requirements.txt from PyPI into a venv in the temp dir
#
# Nodes are started by scripts/couchdb_node.mjs (the integration harness, plugin installed
# from the existing build: COUCH_PGP_IT_PREBUILT=1, no make), one at a time, on 127.0.0.1 and
# a free port, with a random admin password; each is stopped and its copy removed before the
# next starts. No CouchDB code is kept in this repository: the suite is read at run time.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HELPER="$REPO/scripts/couchdb_node.mjs"
say() { echo "couchdb_suites: $*" >&2; }
die() { echo "couchdb_suites: error: $*" >&2; exit 2; }

export COUCHDB_HOME=${COUCHDB_HOME:-/opt/couchdb}
export COUCH_PGP_IT_PREBUILT=${COUCH_PGP_IT_PREBUILT:-1}
export COUCH_PGP_IT_TIMEOUT_MS=${COUCH_PGP_IT_TIMEOUT_MS:-$((4 * 60 * 60 * 1000))}
MODES=${MODES:-plain off on}
MANGO_TIMEOUT=${MANGO_TIMEOUT:-3600}
COUCHDB_TAG=${COUCHDB_TAG:-3.5.0}
PYTHON=${PYTHON:-python3}

[ -x "$COUCHDB_HOME/bin/couchdb" ] || die "COUCHDB_HOME=$COUCHDB_HOME is not a CouchDB release"
[ "${MODES%% *}" = plain ] || die "MODES must start with plain (the reference run)"
command -v node >/dev/null || die "node not found"

if [ -n "${COUCHDB_SUITES_OUT:-}" ]; then
    mkdir -p "$COUCHDB_SUITES_OUT" && COUCHDB_SUITES_OUT=$(cd "$COUCHDB_SUITES_OUT" && pwd)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/couchdb_suites.XXXXXX")
NODE_PID=""
NOSE_PID=""
stop_nose() {
    [ -n "$NOSE_PID" ] || return 0
    kill -TERM "$NOSE_PID" 2>/dev/null || true # timeout(1) passes it on to nose2
    wait "$NOSE_PID" 2>/dev/null || true
    NOSE_PID=""
}
stop_node() {
    [ -n "$NODE_PID" ] || return 0
    exec 3>&-                               # stdin EOF: the helper stops the node cleanly
    for _ in $(seq 60); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$NODE_PID" 2>/dev/null; then
        say "node helper $NODE_PID still running; SIGTERM"
        kill -TERM "$NODE_PID" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
}
cleanup() {
    stop_nose
    stop_node
    if [ -n "${COUCHDB_SUITES_OUT:-}" ] && [ -d "$WORK/out" ]; then
        mkdir -p "$COUCHDB_SUITES_OUT" && cp -R "$WORK/out/." "$COUCHDB_SUITES_OUT/" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
mkdir -p "$WORK/out" "$WORK/src"

# --- The suite, copied out of the given tree (which is only read) -----------------------
if [ -n "${COUCHDB_SRC_TREE:-}" ]; then
    [ -d "$COUCHDB_SRC_TREE/src/mango/test" ] || die "COUCHDB_SRC_TREE=$COUCHDB_SRC_TREE has no src/mango/test"
    cp -R "$COUCHDB_SRC_TREE/src/mango" "$WORK/src/mango"
    SUITE_FROM="$COUCHDB_SRC_TREE"
elif [ -n "${COUCHDB_GIT:-}" ]; then
    git --git-dir="$COUCHDB_GIT" rev-parse -q --verify "$COUCHDB_TAG^{commit}" >/dev/null ||
        die "$COUCHDB_GIT has no $COUCHDB_TAG"
    git --git-dir="$COUCHDB_GIT" archive "$COUCHDB_TAG" src/mango | tar -x -C "$WORK"
    SUITE_FROM="$COUCHDB_GIT @ $COUCHDB_TAG ($(git --git-dir="$COUCHDB_GIT" rev-parse --short "$COUCHDB_TAG^{commit}"))"
else
    die "set COUCHDB_SRC_TREE=<CouchDB checkout> or COUCHDB_GIT=<CouchDB git dir> (with COUCHDB_TAG, default 3.5.0)"
fi
[ -f "$WORK/src/mango/requirements.txt" ] && [ -f "$WORK/src/mango/unittest.cfg" ] ||
    die "src/mango has no requirements.txt or unittest.cfg"
find "$WORK/src/mango" -name '__pycache__' -prune -exec rm -rf {} + # a checkout's own caches
say "Mango suite from $SUITE_FROM: $(ls "$WORK/src/mango/test" | grep -c '^[0-9].*\.py$') test files"

# --- Python venv with the suite's own requirements -------------------------------------
say "creating a venv ($("$PYTHON" --version 2>&1)) and installing src/mango/requirements.txt"
"$PYTHON" -m venv "$WORK/venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$WORK/venv/bin/python" -m pip install -q \
    -r "$WORK/src/mango/requirements.txt" >"$WORK/out/pip.log" 2>&1 ||
    { cat "$WORK/out/pip.log" >&2; die "pip install failed"; }
VPY="$WORK/venv/bin/python"

release_digest() {
    (cd "$COUCHDB_HOME" && find . -printf '%p %y %m %s %T@ %l\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)
}
DIGEST_BEFORE=$(release_digest)
cd "$WORK" # nose2 and hypothesis (.hypothesis/) write into the current directory

# --- One node at a time ------------------------------------------------------------------
start_node() { # mode -> NODE_PID, NODE_URL, NODE_USER, NODE_PASS, NODE_LIB
    local mode=$1 line="" kv
    local ini=()
    if [ "$mode" != plain ]; then
        for kv in ${COUCH_PGP_SET:-}; do ini+=(--set "$kv"); done
    fi
    rm -f "$WORK/node.in" && mkfifo "$WORK/node.in"
    : >"$WORK/node.json"
    node "$HELPER" --mode "$mode" "${ini[@]}" --save-log "$WORK/out/$mode.couchdb.log" \
        <"$WORK/node.in" >"$WORK/node.json" 2>"$WORK/out/$mode.node.log" &
    NODE_PID=$!
    exec 3>"$WORK/node.in" # holds the helper's stdin open; closing it stops the node
    for _ in $(seq 360); do
        line=$(head -n 1 "$WORK/node.json")
        [ -n "$line" ] && break
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.5
    done
    if [ -z "$line" ]; then
        cat "$WORK/out/$mode.node.log" >&2
        die "the $mode node did not start"
    fi
    eval "$(printf '%s' "$line" | "$VPY" -c '
import json, shlex, sys
d = json.loads(sys.stdin.read())
for k, v in (("NODE_URL", d["url"]), ("NODE_USER", d["username"]), ("NODE_PASS", d["password"]), ("NODE_LIB", d["couch_pgp"] or "-")):
    print("%s=%s" % (k, shlex.quote(v)))')"
    case "$NODE_URL" in http://127.0.0.1:*) ;; *) die "node URL $NODE_URL is not on 127.0.0.1" ;; esac
}

for mode in $MODES; do
    case "$mode" in plain|off|on) ;; *) die "unknown mode $mode (plain, off, on)" ;; esac
    say "[$mode] starting a node"
    start_node "$mode"
    enable=$(curl -s -u "$NODE_USER:$NODE_PASS" -w ' %{http_code}' "$NODE_URL/_node/_local/_config/couch_pgp/enable" | tr -d '\n' || true)
    case "$enable" in *' 200') enable=${enable% 200} ;; *' 404') enable='(unset)' ;; *) enable="(${enable##* })" ;; esac
    pgp=$(curl -s -o /dev/null -w '%{http_code}' "$NODE_URL/_pgp" || true)
    say "[$mode] $NODE_URL  plugin: $NODE_LIB  [couch_pgp] enable: $enable  GET /_pgp: $pgp"
    [ "$mode" = plain ] || [ -z "${COUCH_PGP_SET:-}" ] || say "[$mode] settings applied: $COUCH_PGP_SET"
    echo "$mode $NODE_LIB $enable $pgp" >"$WORK/out/$mode.node.info"
    fail_fast=()
    [ "${MANGO_FAIL_FAST:-0}" = 1 ] && fail_fast=(-F)
    say "[$mode] nose2 ${fail_fast[*]} -s src/mango/test -c src/mango/unittest.cfg ${MANGO_TEST_OPTS:-}"
    started=$(date +%s)
    # In the background and waited for, so that a signal to this script acts at once.
    # shellcheck disable=SC2086 # MANGO_TEST_OPTS is a list of words
    COUCH_HOST="$NODE_URL" COUCH_USER="$NODE_USER" COUCH_PASS="$NODE_PASS" PYTHONDONTWRITEBYTECODE=1 \
        timeout -k 30 "$MANGO_TIMEOUT" "$WORK/venv/bin/nose2" "${fail_fast[@]}" --no-user-config -v \
            -s src/mango/test -c src/mango/unittest.cfg \
            --plugin nose2.plugins.junitxml --junit-xml --junit-xml-path "$WORK/out/$mode.xml" \
            ${MANGO_TEST_OPTS:-} >"$WORK/out/$mode.nose2.log" 2>&1 3>&- </dev/null &
    NOSE_PID=$!
    rc=0
    wait "$NOSE_PID" || rc=$?
    NOSE_PID=""
    say "[$mode] nose2 exited $rc after $(( $(date +%s) - started )) s; $(tail -n 1 "$WORK/out/$mode.nose2.log")"
    echo "$rc" >"$WORK/out/$mode.rc"
    stop_node
    [ -s "$WORK/out/$mode.xml" ] || { tail -n 40 "$WORK/out/$mode.nose2.log" >&2; die "[$mode] no JUnit report"; }
done

DIGEST_AFTER=$(release_digest)
[ "$DIGEST_BEFORE" = "$DIGEST_AFTER" ] || die "the release at $COUCHDB_HOME changed during the run"
say "release at $COUCHDB_HOME unchanged (tree digest ${DIGEST_AFTER:0:16}...)"

# --- Compare -----------------------------------------------------------------------------
rc=0
"$VPY" - "$WORK/out" $MODES <<'PY' || rc=$?
import sys, xml.etree.ElementTree as ET
out, modes = sys.argv[1], sys.argv[2:]

def outcomes(mode):
    res = {}
    for tc in ET.parse(f"{out}/{mode}.xml").getroot().iter("testcase"):
        name = f'{tc.get("classname")}.{tc.get("name")}'
        kind, msg = "passed", ""
        for k in ("failure", "error", "skipped"):
            el = tc.find(k)
            if el is not None:
                kind = {"failure": "failed", "error": "error"}.get(k, k)
                msg = (el.get("message") or "") + "\n" + (el.text or "")
                break
        res[name] = (kind, msg.strip())
    return res

runs = {m: outcomes(m) for m in modes}
ref = runs[modes[0]]
rows, differing = [], {}
for m in modes:
    r = runs[m]
    count = lambda k: sum(1 for v in r.values() if v[0] == k)
    diff = sorted(n for n in set(r) | set(ref) if r.get(n, ("absent",))[0] != ref.get(n, ("absent",))[0])
    differing[m] = diff
    rows.append((m, len(r), count("passed"), count("failed"), count("error"), count("skipped"),
                 "-" if m == modes[0] else (str(len(diff)) if diff else "none")))
hdr = ("mode", "run", "passed", "failed", "errors", "skipped", f"differs from {modes[0]}")
w = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(len(hdr))]
print()
for row in [hdr] + rows:
    print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip())
print()
for m in modes[1:]:
    for n in differing[m]:
        a, b = ref.get(n, ("absent", "")), runs[m].get(n, ("absent", ""))
        print(f"DIFFERS [{m}] {n}: {modes[0]} {a[0]}, {m} {b[0]}")
        for line in (b[1] or a[1]).splitlines()[-6:]:
            print(f"    {line}")
bad_everywhere = sorted(n for n in ref if ref[n][0] in ("failed", "error")
                        and all(runs[m].get(n, ("",))[0] in ("failed", "error") for m in modes))
for n in bad_everywhere:
    print(f"FAILS IN EVERY MODE {n}: {ref[n][1].splitlines()[-1] if ref[n][1] else ''}")
skips = {}
for n, (k, msg) in ref.items():
    if k == "skipped":
        reason = msg.splitlines()[0] if msg else ""
        skips[reason] = skips.get(reason, 0) + 1
for reason, k in sorted(skips.items(), key=lambda x: -x[1]):
    print(f"skipped in {modes[0]}: {k} x {reason}")
sys.exit(1 if any(differing[m] for m in modes[1:]) else 0)
PY
if [ "$rc" = 0 ]; then say "the plugin runs have exactly the plain run's outcomes"
else say "the plugin runs DIFFER from the plain run"; fi
exit "$rc"
