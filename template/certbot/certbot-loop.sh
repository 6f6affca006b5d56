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
# The same for every app host listed in $HOSTS_FILE (the `apps` answer), one lineage per host:
# a host that fails (DNS not there yet) never holds up the others. The file is read again every
# HOSTS_CHECK_SECONDS; a new host gets its placeholder and certificate at once, and a host taken
# off the list is no longer renewed.
set -u

: "${DOMAIN:?DOMAIN is not set}"
: "${ACME_SERVER:?ACME_SERVER is not set}"
HELPER="python3 /opt/scaffold/scaffold_certbot.py"
WEBROOT=/var/www/acme
DEPLOY_HOOK="python3 /opt/scaffold/scaffold_certbot.py activate"
RENEW_INTERVAL_SECONDS=${RENEW_INTERVAL_SECONDS:-43200}
RETRY_FIRST_SECONDS=${RETRY_FIRST_SECONDS:-300}
RETRY_MAX_SECONDS=${RETRY_MAX_SECONDS:-21600}
HOSTS_FILE=${HOSTS_FILE:-/opt/scaffold/hosts}
HOSTS_CHECK_SECONDS=${HOSTS_CHECK_SECONDS:-3}
ACME_CHALLENGE=${ACME_CHALLENGE:-http}

log() { echo "[certbot-loop] $*"; }

trap 'log "stopping"; exit 0' TERM INT

if [ -n "${ACME_EMAIL:-}" ]; then
    set -- --email "$ACME_EMAIL" --no-eff-email
else
    set -- --register-unsafely-without-email
fi

# Every host name certbot keeps a certificate for: DOMAIN, then the app hosts (comments and
# blank lines of $HOSTS_FILE skipped).
hosts() {
    echo "$DOMAIN"
    [ -f "$HOSTS_FILE" ] && sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$HOSTS_FILE"
}

hosts_signature() {
    cat "$HOSTS_FILE" 2>/dev/null | cksum
}

$HELPER placeholder || exit 1

# How certbot proves control of a host: the webroot nginx serves, or the DNS plugin with the
# credentials file scaffold writes from .env. One word per argument (no spaces in any value).
challenge_args() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        echo "--authenticator dns-$DNS_PLUGIN --dns-$DNS_PLUGIN-credentials $DNS_CREDENTIALS" \
            "--dns-$DNS_PLUGIN-propagation-seconds ${DNS_PROPAGATION_SECONDS:-60}"
    else
        echo "--webroot --webroot-path $WEBROOT"
    fi
}

# $1's certificate names, comma-separated: the host; for DOMAIN with CERT_WILDCARD=true also *.DOMAIN.
cert_domains() {
    if [ "$1" = "$DOMAIN" ] && [ "${CERT_WILDCARD:-false}" = true ]; then
        echo "$DOMAIN,*.$DOMAIN"
    else
        echo "$1"
    fi
}

# $1: the host; then certbot's account options.
obtain() {
    host=$1
    shift
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER check-dns-credentials || return 1
    else
        $HELPER wait-for-webroot "$host" || log "nginx does not serve the webroot for $host yet; trying anyway"
    fi
    # A lineage whose files are unusable (the helper says why) cannot be renewed: out of the way.
    $HELPER set-aside-unusable "$host"
    # --force-renewal only when the existing certificate came from another CA
    # (e.g. after switching from letsencrypt-staging to letsencrypt).
    extra=""
    if $HELPER needs-new-ca "$host"; then
        log "the certificate on disk comes from another ACME server: replacing it"
        extra="--force-renewal --break-my-certs"
    elif $HELPER needs-other-challenge "$host"; then
        extra="--force-renewal"
    fi
    # shellcheck disable=SC2046,SC2086
    certbot certonly --non-interactive --agree-tos --keep-until-expiring \
        $(challenge_args) \
        --cert-name "$host" --domains "$(cert_domains "$host")" \
        --server "$ACME_SERVER" "$@" $extra \
        --deploy-hook "$DEPLOY_HOOK"
}

renew() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER check-dns-credentials || return 1
    fi
    certbot renew --non-interactive --no-random-sleep-on-renew \
        --cert-name "$1" --deploy-hook "$DEPLOY_HOOK"
}

explain_failure() {
    if [ "$ACME_CHALLENGE" = dns ]; then
        $HELPER explain-dns-failure "$1"
        log "nginx keeps serving the current certificate of $1 meanwhile; the other hosts are not held up."
        return
    fi
    log "could not get a certificate for $1 from $ACME_SERVER. Check, in this order:"
    log "  1. DNS: $1 must resolve to this host's public address (A/AAAA records)."
    log "  2. Port 80 must reach this host's nginx from the internet (router forwarding, firewall)."
    log "  3. nginx must be running: 'docker compose ps nginx', 'docker compose logs nginx'."
    log "  4. certbot's own message above (rate limits, CAA records, a typo in the domain)."
    log "nginx keeps serving the current certificate meanwhile; the other hosts are not held up."
}

# One host: renew or obtain, then make sure nginx is pointed at what exists. Exit status: certbot's.
keep_certificate() {
    host=$1
    shift
    $HELPER placeholder "$host" || return 1
    if $HELPER has-certificate "$host"; then
        renew "$host"
    else
        obtain "$host" "$@"
    fi
    status=$?
    # Covers a restart after an issuance whose reload signal was lost.
    $HELPER activate-existing "$host"
    [ "$status" -eq 0 ] || explain_failure "$host"
    return "$status"
}

delay=$RETRY_FIRST_SECONDS
while :; do
    signature=$(hosts_signature)
    failed=0
    for host in $(hosts); do
        keep_certificate "$host" "$@" || failed=1
    done
    if [ "$failed" -eq 0 ]; then
        $HELPER clear-failure
        delay=$RETRY_FIRST_SECONDS
        pause=$RENEW_INTERVAL_SECONDS
    else
        pause=$delay
        log "Next attempt in ${pause}s (the wait doubles after each failure, up to ${RETRY_MAX_SECONDS}s)."
        delay=$((delay * 2))
        [ "$delay" -gt "$RETRY_MAX_SECONDS" ] && delay=$RETRY_MAX_SECONDS
    fi
    # Sleep in short steps, waking early when the host list changes (an app added or removed).
    # In the background so that `docker compose stop` (SIGTERM) ends the loop at once.
    while [ "$pause" -gt 0 ] && [ "$(hosts_signature)" = "$signature" ]; do
        step=$HOSTS_CHECK_SECONDS
        [ "$step" -gt "$pause" ] && step=$pause
        sleep "$step" &
        wait $!
        pause=$((pause - step))
    done
    [ "$(hosts_signature)" = "$signature" ] || log "the host list changed: $(hosts | tr '\n' ' ')"
done
