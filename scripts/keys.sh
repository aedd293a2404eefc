#!/bin/sh
# The operator's commands on keys over time (README "Keys over time"), against any node of
# a running CouchDB with couch_pgp; each command is applied on every node of the cluster.
#
#   sh scripts/keys.sh rotate [OVERLAP_SECONDS]            new identity key (default overlap 7 days)
#   sh scripts/keys.sh revoke FINGERPRINT REASON [MESSAGE]  REASON: compromised|superseded|retired|unspecified
#   sh scripts/keys.sh token-secret                        invalidate every session token
#   sh scripts/keys.sh status                              GET /_pgp (fingerprint, previous, revocations)
#
# COUCH_URL: the node, e.g. http://127.0.0.1:5984 (default). Server admin credentials come
# from COUCH_ADMIN (user:password), sent with curl's --user from a config on stdin, never on
# the command line where ps shows it. Prints the node's JSON answer; exits 1 unless every
# node applied the command ("ok": true).
set -eu

URL=${COUCH_URL:-http://127.0.0.1:5984}
die() { echo "keys.sh: $*" >&2; exit 2; }
command -v curl >/dev/null || die "curl is needed"

# JSON string escaping for the few values we send (fingerprint, reason, message).
json_string() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk 'BEGIN{ORS=""} {if (NR>1) print "\\n"; print}'
}

post() {
    [ -n "${COUCH_ADMIN:-}" ] || die "set COUCH_ADMIN=user:password (a server admin)"
    out=$(printf 'user = "%s"\n' "$COUCH_ADMIN" | curl -sS -K - -X POST \
        -H 'Content-Type: application/json' --data "$2" "$URL/_pgp/$1") || die "curl failed"
    printf '%s\n' "$out"
    case $out in
        *'"ok":true'*) exit 0 ;;
        *) exit 1 ;;
    esac
}

[ $# -ge 1 ] || die "usage: keys.sh rotate [OVERLAP] | revoke FPR REASON [MESSAGE] | token-secret | status"
cmd=$1; shift
case $cmd in
    rotate)
        overlap=${1:-604800}
        case $overlap in *[!0-9]*|'') die "OVERLAP must be whole seconds" ;; esac
        post rotate "{\"overlap\":$overlap}" ;;
    revoke)
        [ $# -ge 2 ] || die "usage: keys.sh revoke FINGERPRINT REASON [MESSAGE]"
        post revoke "{\"fingerprint\":\"$(json_string "$1")\",\"reason\":\"$(json_string "$2")\",\"message\":\"$(json_string "${3:-}")\"}" ;;
    token-secret)
        post token_secret '{}' ;;
    status)
        curl -sS "$URL/_pgp"; echo ;;
    *)
        die "unknown command $cmd" ;;
esac
