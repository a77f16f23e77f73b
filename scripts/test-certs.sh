#!/usr/bin/env bash
# Certificates for the test servers' TLS listeners, made at test time with the `openssl` CLI
# (installed from Debian when missing). Nothing here is ever shipped or reused across runs.
#
#   scripts/test-certs.sh DIR CLIENT_CN
#
# Writes into DIR (once: a DIR that already has ca.crt is left as it is):
#   ca.crt, ca.key              the test CA
#   server.crt, server.key      signed by the CA, valid for IP 127.0.0.1 only (so a client
#                               that connects as `localhost` must refuse it: wrong host name)
#   client.crt, client.key      signed by the CA, CN=CLIENT_CN, for client authentication
#   other-ca.crt                a second CA that signed nothing: trusting only it must fail
# Keys are ECDSA P-256 and mode 0600; certificates are valid for 30 days from now.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# == 2 ]] || { echo "usage: $0 DIR CLIENT_CN" >&2; exit 2; }
dir=$1 client_cn=$2

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! command -v openssl >/dev/null 2>&1; then
    log "openssl missing: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y openssl >&2 || {
        as_root apt-get update >&2
        as_root apt-get install -y openssl >&2
    }
fi

[[ -f $dir/ca.crt ]] && exit 0
mkdir -p "$dir"
work=$(mktemp -d "$dir/.make-XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# A CA: self-signed, CA:TRUE, may sign certificates.
make_ca() {
    local name=$1 cn=$2
    key "$work/$name.key"
    openssl req -x509 -new -key "$work/$name.key" -out "$work/$name.crt" -days 30 -sha256 \
        -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# A leaf signed by the test CA, with the given extensions.
make_leaf() {
    local name=$1 cn=$2 extensions=$3
    key "$work/$name.key"
    openssl req -new -key "$work/$name.key" -out "$work/$name.csr" -subj "/CN=$cn" 2>/dev/null
    printf '%s\n' "$extensions" >"$work/$name.ext"
    openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
        -CAcreateserial -out "$work/$name.crt" -days 30 -sha256 \
        -extfile "$work/$name.ext" 2>/dev/null
}

make_ca ca "checkpoint test CA"
make_ca other-ca "checkpoint untrusted test CA"
make_leaf server 127.0.0.1 "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1"
make_leaf client "$client_cn" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

chmod 644 "$work"/*.crt
# ca.crt last: its presence says the set is complete.
for file in ca.key server.crt server.key client.crt client.key other-ca.crt ca.crt; do
    mv "$work/$file" "$dir/$file"
done
log "made a test CA and certificates in $dir"
