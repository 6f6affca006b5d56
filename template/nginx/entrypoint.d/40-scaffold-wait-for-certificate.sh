#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts. nginx cannot start its HTTPS
# server without a certificate; the certbot service puts a self-signed placeholder in place
# within a second of its start, then the real certificate once it is issued. Wait for it
# here instead of letting nginx fail and restart in a loop.
set -eu

cert=/etc/letsencrypt/scaffold/current/fullchain.pem
key=/etc/letsencrypt/scaffold/current/privkey.pem
limit=${SCAFFOLD_CERT_WAIT_SECONDS:-120}

waited=0
while [ ! -s "$cert" ] || [ ! -s "$key" ]; do
    if [ "$waited" -ge "$limit" ]; then
        echo "$0: no certificate at $cert after ${limit}s." >&2
        echo "$0: the certbot service creates it: check 'docker compose ps certbot' and 'docker compose logs certbot'." >&2
        exit 1
    fi
    if [ "$waited" -eq 0 ]; then
        echo "$0: waiting for the certbot service to provide a certificate"
    fi
    sleep 1
    waited=$((waited + 1))
done
echo "$0: certificate found"
