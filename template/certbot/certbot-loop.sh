#!/bin/sh
# The certbot service's main loop (POSIX sh: nothing resident between runs but this shell and
# `sleep`).
#  1. Put a self-signed placeholder in place at once, so nginx can start serving HTTPS.
#  2. Obtain the real certificate from $ACME_SERVER: through the ACME webroot once nginx
#     serves it (HTTP-01), or through the DNS plugin $DNS_PLUGIN (ACME_CHALLENGE=dns, DNS-01).
#     The deploy hook points nginx at it; nginx reloads.
#  3. Every RENEW_INTERVAL_SECONDS, `certbot renew`: it contacts the CA only when the
#     certificate is due (a third of its lifetime left), so restarts never burn rate limits.
#  A failure is explained once, then retried with a growing delay instead of hammering the CA.
set -u

: "${DOMAIN:?DOMAIN is not set}"
: "${ACME_SERVER:?ACME_SERVER is not set}"
HELPER="python3 /opt/scaffold/scaffold_certbot.py"
WEBROOT=/var/www/acme
DEPLOY_HOOK="python3 /opt/scaffold/scaffold_certbot.py activate"
RENEW_INTERVAL_SECONDS=${RENEW_INTERVAL_SECONDS:-43200}
RETRY_FIRST_SECONDS=${RETRY_FIRST_SECONDS:-300}
RETRY_MAX_SECONDS=${RETRY_MAX_SECONDS:-21600}
ACME_CHALLENGE=${ACME_CHALLENGE:-http}

log() { echo "[certbot-loop] $*"; }

trap 'log "stopping"; exit 0' TERM INT

if [ -n "${ACME_EMAIL:-}" ]; then
    set -- --email "$ACME_EMAIL" --no-eff-email
else
    set -- --register-unsafely-without-email
fi

$HELPER placeholder || exit 1

# How certbot proves control of the domain: the webroot nginx serves, or the DNS plugin with the
# credentials file scaffold writes from .env. One word per argument (no spaces in any value).
challenge_args() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        echo "--authenticator dns-$DNS_PLUGIN --dns-$DNS_PLUGIN-credentials $DNS_CREDENTIALS" \
            "--dns-$DNS_PLUGIN-propagation-seconds ${DNS_PROPAGATION_SECONDS:-60}"
    else
        echo "--webroot --webroot-path $WEBROOT"
    fi
}

# The certificate's names, comma-separated: the domain, and *.domain with CERT_WILDCARD=true.
cert_domains() {
    if [ "${CERT_WILDCARD:-false}" = true ]; then
        echo "$DOMAIN,*.$DOMAIN"
    else
        echo "$DOMAIN"
    fi
}

obtain() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER check-dns-credentials || return 1
    else
        $HELPER wait-for-webroot || log "nginx does not serve the webroot yet; trying anyway"
    fi
    # A lineage whose files are unusable (the helper says why) cannot be renewed: out of the way.
    $HELPER set-aside-unusable
    # --force-renewal only when the existing certificate came from another CA
    # (e.g. after switching from letsencrypt-staging to letsencrypt).
    extra=""
    if $HELPER needs-new-ca; then
        log "the certificate on disk comes from another ACME server: replacing it"
        extra="--force-renewal --break-my-certs"
    elif $HELPER needs-other-challenge; then
        extra="--force-renewal"
    fi
    # shellcheck disable=SC2046,SC2086
    certbot certonly --non-interactive --agree-tos --keep-until-expiring \
        $(challenge_args) \
        --cert-name "$DOMAIN" --domains "$(cert_domains)" \
        --server "$ACME_SERVER" "$@" $extra \
        --deploy-hook "$DEPLOY_HOOK"
}

renew() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER check-dns-credentials || return 1
    fi
    certbot renew --non-interactive --no-random-sleep-on-renew \
        --cert-name "$DOMAIN" --deploy-hook "$DEPLOY_HOOK"
}

explain_failure() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER explain-dns-failure
        log "nginx keeps serving the current certificate meanwhile. Next attempt in ${delay}s."
        return
    fi
    log "could not get a certificate for $DOMAIN from $ACME_SERVER. Check, in this order:"
    log "  1. DNS: $DOMAIN must resolve to this host's public address (A/AAAA records)."
    log "  2. Port 80 must reach this host's nginx from the internet (router forwarding, firewall)."
    log "  3. nginx must be running: 'docker compose ps nginx', 'docker compose logs nginx'."
    log "  4. certbot's own message above (rate limits, CAA records, a typo in the domain)."
    log "nginx keeps serving the current certificate meanwhile. Next attempt in ${delay}s."
}

delay=$RETRY_FIRST_SECONDS
while :; do
    if $HELPER has-certificate; then
        renew
    else
        obtain "$@"
    fi
    status=$?
    # Covers a restart after an issuance whose reload signal was lost.
    $HELPER activate-existing
    if [ "$status" -eq 0 ]; then
        $HELPER clear-failure
        delay=$RETRY_FIRST_SECONDS
        pause=$RENEW_INTERVAL_SECONDS
    else
        explain_failure
        pause=$delay
        delay=$((delay * 2))
        [ "$delay" -gt "$RETRY_MAX_SECONDS" ] && delay=$RETRY_MAX_SECONDS
    fi
    # In the background so that `docker compose stop` (SIGTERM) ends the loop at once.
    sleep "$pause" &
    wait $!
done
