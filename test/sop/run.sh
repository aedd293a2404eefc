#!/bin/sh
# couch-pgp-sop against Debian's sqop: round trips in both directions, then the SOP exit
# codes for bad input. One line per check; the last line is "N passed, M failed".
#
#   sh test/sop/run.sh            builds the binary (release) first
#   SOP_BIN=path sh test/sop/run.sh   tests an existing binary
set -u
cd "$(dirname "$0")/../.."

PEER=${PEER_SOP:-sqop}
if ! command -v "$PEER" >/dev/null 2>&1; then
    echo "test/sop: $PEER not found (scripts/setup.sh installs Debian's sqop)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

if [ -z "${SOP_BIN:-}" ]; then
    echo "test/sop: building couch-pgp-sop (release)"
    if ! (cd native/couch_pgp_sop && cargo build --release --locked --quiet); then
        echo "0 passed, 1 failed"
        exit 1
    fi
    SOP_BIN=$(pwd)/native/couch_pgp_sop/target/release/couch-pgp-sop
fi
case $SOP_BIN in /*) ;; *) SOP_BIN=$(pwd)/$SOP_BIN ;; esac
US=$SOP_BIN

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1"; }
# check DESCRIPTION COMMAND...: passes when the command exits 0.
check() {
    d=$1; shift
    if "$@" >"$T/out" 2>"$T/err"; then ok "$d"; else ko "$d ($(head -c 300 "$T/err" | tr '\n' ' '))"; fi
}
# code N DESCRIPTION COMMAND...: passes when the command exits with N.
code() {
    want=$1; d=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok "exit $want: $d"; else ko "exit $want: $d (got $got)"; fi
}
same() { cmp -s "$1" "$2"; }
# A VERIFICATION line: timestamp, signing key and certificate fingerprints, mode.
vline='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z [0-9A-F]{40} [0-9A-F]{40} mode:(binary|text)'
# sqop 0.27 writes the older form, without the mode.
pline='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z [0-9A-F]{40} [0-9A-F]{40}'

cd "$T"
printf 'Hello, CouchDB.\nA second line.\n' > msg
printf 'correct horse battery staple' > pw
printf 'wrong password' > badpw

# ---------------------------------------------------------------- keys
check "ours: generate-key with two user ids" sh -c "'$US' generate-key 'Alice <alice@example.org>' 'Alice Work <alice@work.example>' > alice.key"
check "ours: extract-cert" sh -c "'$US' extract-cert < alice.key > alice.cert"
check "ours: generate-key with no user id" sh -c "'$US' generate-key > anon.key && '$US' extract-cert < anon.key > anon.cert"
check "sqop: generate-key and extract-cert" sh -c "'$PEER' generate-key 'Bob <bob@example.org>' > bob.key && '$PEER' extract-cert < bob.key > bob.cert"
check "sqop reads our certificate (encrypts to it)" sh -c "'$PEER' encrypt alice.cert < msg > to-alice.asc"
check "our certificate has both user ids" sh -c "sq inspect alice.cert 2>/dev/null | grep -q 'Alice Work' || gpg --batch --homedir '$T' --show-keys alice.cert 2>/dev/null | grep -q 'Alice Work'"
check "ours: extract-cert of sqop's key matches sqop's certificate" sh -c "'$US' extract-cert < bob.key > bob.cert2 && '$US' dearmor < bob.cert2 > b1 && '$US' dearmor < bob.cert > b2 && cmp -s b1 b2"
check "ours: generate-key --no-armor is binary" sh -c "'$US' generate-key --no-armor x > bin.key && ! grep -q 'BEGIN PGP' bin.key && '$US' extract-cert < bin.key | grep -q 'BEGIN PGP PUBLIC KEY BLOCK'"

# ---------------------------------------------------------------- encryption
check "sqop encrypts, ours decrypts" sh -c "'$US' decrypt alice.key < to-alice.asc > out && cmp -s out msg"
check "ours encrypts, sqop decrypts" sh -c "'$US' encrypt bob.cert < msg > to-bob.asc && '$PEER' decrypt bob.key < to-bob.asc > out && cmp -s out msg"
check "ours encrypts --no-armor, sqop decrypts" sh -c "'$US' encrypt --no-armor bob.cert < msg > to-bob.bin && ! grep -q 'BEGIN PGP' to-bob.bin && '$PEER' decrypt bob.key < to-bob.bin > out && cmp -s out msg"
check "ours encrypts to two recipients, both decrypt" sh -c "'$US' encrypt bob.cert alice.cert < msg > both.asc && '$PEER' decrypt bob.key < both.asc > o1 && '$US' decrypt alice.key < both.asc > o2 && cmp -s o1 msg && cmp -s o2 msg"
check "ours encrypts --sign-with, sqop decrypts and verifies" sh -c "'$US' encrypt --sign-with alice.key bob.cert < msg > sealed.asc && '$PEER' decrypt --verify-out v1 --verify-with alice.cert bob.key < sealed.asc > out && cmp -s out msg && grep -Eq '$pline' v1"
check "sqop encrypts --sign-with, ours decrypts and verifies (VERIFICATION line)" sh -c "'$PEER' encrypt --sign-with bob.key alice.cert < msg > sealed2.asc && '$US' decrypt --verifications-out v2 --verify-with bob.cert alice.key < sealed2.asc > out && cmp -s out msg && grep -Eq '$vline' v2"
check "ours decrypt --verify-out (old name) writes the line" sh -c "'$US' decrypt --verify-out v3 --verify-with bob.cert alice.key < sealed2.asc > out && grep -Eq '$vline' v3"
check "ours decrypt with a non-signer's cert: plaintext, no VERIFICATION line" sh -c "'$US' decrypt --verifications-out v4 --verify-with anon.cert alice.key < sealed2.asc > out && cmp -s out msg && [ ! -s v4 ]"
check "ours decrypt tries every key given" sh -c "'$US' decrypt anon.key alice.key < to-alice.asc > out && cmp -s out msg"
check "ours encrypts --as text, sqop decrypts" sh -c "'$US' encrypt --as text --sign-with alice.key bob.cert < msg > text.asc && '$PEER' decrypt --verify-out vt --verify-with alice.cert bob.key < text.asc > out && cmp -s out msg && grep -Eq '$pline' vt"
check "ours encrypts --with-password, sqop decrypts" sh -c "'$US' encrypt --with-password pw < msg > sym.asc && '$PEER' decrypt --with-password pw < sym.asc > out && cmp -s out msg"
check "sqop encrypts --with-password, ours decrypts" sh -c "'$PEER' encrypt --with-password pw < msg > sym2.asc && '$US' decrypt --with-password pw < sym2.asc > out && cmp -s out msg"
check "ours encrypts to a password and a cert, each opens it" sh -c "'$US' encrypt --with-password pw bob.cert < msg > mixed.asc && '$PEER' decrypt bob.key < mixed.asc > o1 && '$PEER' decrypt --with-password pw < mixed.asc > o2 && cmp -s o1 msg && cmp -s o2 msg"
check "ours decrypt --session-key-out, sqop decrypts with that session key" sh -c "'$US' decrypt --session-key-out sk alice.key < to-alice.asc > out && '$PEER' decrypt --with-session-key sk < to-alice.asc > out2 && cmp -s out2 msg"
check "sqop decrypt --session-key-out, ours decrypts with that session key" sh -c "'$PEER' decrypt --session-key-out sk2 bob.key < to-bob.asc > out && '$US' decrypt --with-session-key sk2 < to-bob.asc > out2 && cmp -s out2 msg"

# ---------------------------------------------------------------- signatures
check "ours signs (detached), sqop verifies" sh -c "'$US' sign alice.key < msg > msg.sig && '$PEER' verify msg.sig alice.cert < msg | grep -Eq '$pline'"
check "ours signs --as text, sqop verifies" sh -c "'$US' sign --as text alice.key < msg > msg.tsig && '$PEER' verify msg.tsig alice.cert < msg | grep -Eq '$pline'"
check "ours signs --no-armor, sqop verifies" sh -c "'$US' sign --no-armor alice.key < msg > msg.bsig && ! grep -q 'BEGIN PGP' msg.bsig && '$PEER' verify msg.bsig alice.cert < msg > /dev/null"
check "sqop signs, ours verifies (VERIFICATION line)" sh -c "'$PEER' sign bob.key < msg > bob.sig && '$US' verify bob.sig bob.cert < msg > v3 && grep -Eq '$vline' v3"
check "sqop signs --as text, ours verifies as mode:text" sh -c "'$PEER' sign --as text bob.key < msg > bob.tsig && '$US' verify bob.tsig bob.cert < msg | grep -q 'mode:text'"
check "ours verify with two certs names the signer" sh -c "'$US' verify bob.sig alice.cert bob.cert < msg | grep -q 'bob.cert'"
check "ours verify --not-before in the future rejects" sh -c "! '$US' verify --not-before 2999-01-01 bob.sig bob.cert < msg > /dev/null 2>&1"
check "ours signs with two keys, sqop sees both" sh -c "'$US' sign alice.key anon.key < msg > two.sig && [ \$('$PEER' verify two.sig alice.cert anon.cert < msg | wc -l) -eq 2 ]"
check "ours inline-sign, sqop inline-verify" sh -c "'$US' inline-sign alice.key < msg > inl.asc && '$PEER' inline-verify --verifications-out vi1 alice.cert < inl.asc > out && cmp -s out msg && grep -Eq '$pline' vi1"
check "ours inline-sign --as text, sqop inline-verify" sh -c "'$US' inline-sign --as text alice.key < msg > inlt.asc && '$PEER' inline-verify alice.cert < inlt.asc > out && cmp -s out msg"
check "ours inline-sign --as clearsigned, sqop inline-verify" sh -c "'$US' inline-sign --as clearsigned alice.key < msg > cs.asc && head -1 cs.asc | grep -q 'BEGIN PGP SIGNED MESSAGE' && '$PEER' inline-verify --verifications-out vi2 alice.cert < cs.asc > out && grep -q 'A second line.' out && grep -Eq '$pline' vi2"
check "sqop inline-sign, ours inline-verify" sh -c "'$PEER' inline-sign bob.key < msg > inl2.asc && '$US' inline-verify --verifications-out v6 bob.cert < inl2.asc > out && cmp -s out msg && grep -Eq '$vline' v6"
check "sqop inline-sign --as clearsigned, ours inline-verify" sh -c "'$PEER' inline-sign --as clearsigned bob.key < msg > cs2.asc && '$US' inline-verify --verifications-out v7 bob.cert < cs2.asc > out && grep -q 'A second line.' out && grep -q 'mode:text' v7"
check "ours inline-sign --no-armor, sqop inline-verify" sh -c "'$US' inline-sign --no-armor alice.key < msg > inl.bin && '$PEER' inline-verify alice.cert < inl.bin > out && cmp -s out msg"

# ---------------------------------------------------------------- armor
check "ours dearmor, sqop armor: same certificate" sh -c "'$US' dearmor < bob.cert > bob.bin && '$PEER' armor < bob.bin > bob.re && '$PEER' dearmor < bob.re > bob.bin2 && cmp -s bob.bin bob.bin2"
check "ours armor picks the label (key, cert, signature, message)" sh -c "'$US' dearmor < alice.key | '$US' armor | head -1 | grep -q 'PRIVATE KEY' && '$US' dearmor < alice.cert | '$US' armor | head -1 | grep -q 'PUBLIC KEY' && '$US' dearmor < msg.sig | '$US' armor | head -1 | grep -q 'SIGNATURE' && '$US' dearmor < to-bob.asc | '$US' armor | head -1 | grep -q 'PGP MESSAGE'"
check "ours armor and dearmor are idempotent" sh -c "'$US' armor < alice.cert > re.asc && '$US' dearmor < re.asc > d1 && '$US' dearmor < d1 > d2 && cmp -s d1 d2 && '$US' armor < d1 | '$US' dearmor | cmp -s - d1"
check "sqop dearmors what ours armors" sh -c "'$PEER' dearmor < to-bob.asc > m1 && '$US' armor < m1 > m2 && '$PEER' dearmor < m2 | cmp -s - m1"

# ---------------------------------------------------------------- locked keys
check "ours: generate-key --with-key-password; sqop signs with it" sh -c "'$US' generate-key --with-key-password pw 'Locked <l@example.org>' > locked.key && '$US' extract-cert < locked.key > locked.cert && '$PEER' sign --with-key-password pw locked.key < msg > l.sig && '$US' verify l.sig locked.cert < msg > /dev/null"
check "ours signs with a locked key and its password" sh -c "'$US' sign --with-key-password pw locked.key < msg > l2.sig && '$PEER' verify l2.sig locked.cert < msg > /dev/null"

# ---------------------------------------------------------------- exit codes
code 29 "decrypt with a key the message is not for" "$US" decrypt anon.key < to-alice.asc
code 29 "decrypt with a wrong password" "$US" decrypt --with-password badpw < sym.asc
code 41 "decrypt input that is not OpenPGP" "$US" decrypt alice.key < msg
code 41 "decrypt a cleartext-signed text" "$US" decrypt alice.key < cs.asc
code 19 "decrypt with no key, password or session key" "$US" decrypt < to-alice.asc
code 23 "decrypt --verify-with without --verifications-out" "$US" decrypt --verify-with bob.cert alice.key < sealed2.asc
code 3 "verify with a certificate that did not sign" "$US" verify bob.sig alice.cert < msg
code 3 "verify altered data" sh -c "printf 'altered' | '$US' verify bob.sig bob.cert"
code 41 "verify a signature that is not OpenPGP" "$US" verify msg bob.cert < msg
code 3 "inline-verify by a certificate that did not sign" "$US" inline-verify alice.cert < inl2.asc
code 41 "inline-verify input that is not OpenPGP" "$US" inline-verify alice.cert < msg
code 19 "encrypt with no recipient and no password" "$US" encrypt < msg
code 41 "encrypt to something that is not a certificate" "$US" encrypt msg < msg
code 17 "encrypt to a signing-only certificate" sh -c "'$US' generate-key --signing-only s > so.key && '$US' extract-cert < so.key > so.cert && '$US' encrypt so.cert < msg"
code 41 "sign with a certificate instead of a key" "$US" sign alice.cert < msg
code 67 "sign with a locked key and no password" "$US" sign locked.key < msg
code 67 "sign with a locked key and a wrong password" "$US" sign --with-key-password badpw locked.key < msg
code 83 "inline-sign --as clearsigned --no-armor" "$US" inline-sign --as clearsigned --no-armor alice.key < msg
code 53 "sign --as text on non-UTF-8 data" sh -c "printf '\377\376' | '$US' sign --as text alice.key"
code 41 "extract-cert from a certificate" "$US" extract-cert < alice.cert
code 41 "dearmor input that is not OpenPGP" "$US" dearmor < msg
code 37 "an unsupported option" "$US" sign --frobnicate alice.key < msg
code 69 "an unsupported subcommand" "$US" merge-certs alice.cert < bob.cert
code 61 "a missing input file" "$US" verify no-such.sig bob.cert < msg
code 59 "an output file that already exists" "$US" decrypt --verifications-out msg --verify-with bob.cert alice.key < sealed2.asc
code 89 "an unknown profile" "$US" generate-key --profile no-such-profile x
code 0 "version" "$US" version

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
