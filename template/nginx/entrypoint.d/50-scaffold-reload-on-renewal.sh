#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts: start a small watcher that reloads
# nginx when certbot signals a new certificate. certbot's deploy hook writes a new value to
# the signal file after every issuance or renewal; the watcher checks the configuration with
# `nginx -t` and only then reloads (never restarts), so a broken edit never takes the site
# down. No Docker socket is involved.
set -eu

signal=/etc/letsencrypt/scaffold/generation
# Points nginx at the new certificate only when nginx can load it (see that script).
choose=/docker-entrypoint.d/40-scaffold-wait-for-certificate.sh
interval=${SCAFFOLD_CERT_CHECK_SECONDS:-5}
case $interval in
'' | *[!0-9]* | 0)
    echo "$0: SCAFFOLD_CERT_CHECK_SECONDS='$interval' is not a whole number of seconds; using 5" >&2
    interval=5
    ;;
esac

# certbot writes one short line; never more than its first 100 bytes end up in the log.
read_signal() {
    head -c 100 "$signal" 2>/dev/null || true
}

# The apps' server blocks (scaffold app add/remove rewrites them): a change reloads nginx too.
read_apps() {
    cat /etc/nginx/conf.d/apps/*.conf 2>/dev/null | cksum
}

watch_certificate() {
    seen=$(read_signal)
    apps_seen=$(read_apps)
    failed=""
    while sleep "$interval"; do
        current=$(read_signal)
        apps=$(read_apps)
        [ "$current" = "$seen" ] && [ "$apps" = "$apps_seen" ] && continue
        # Each app host's certificate (or its placeholder) before nginx -t reads the new server blocks.
        sh "$choose" hosts
        # certbot checks a certificate before it signals; this catches files changed since.
        if ! problem=$(sh "$choose" current); then
            if [ "$failed" != "$current" ]; then
                echo "scaffold: new certificate (generation $current) NOT loaded: nginx cannot load" \
                    "/etc/letsencrypt/scaffold/current ($problem). nginx keeps serving the certificate" \
                    "it has; certbot's log says where the files came from: 'docker compose logs certbot'." >&2
                failed=$current
            fi
            continue
        fi
        if output=$(nginx -t 2>&1); then
            if nginx -s reload; then
                echo "scaffold: new certificate (generation $current) or apps: nginx reloaded"
                seen=$current
                apps_seen=$apps
                failed=""
            fi
        elif [ "$failed" != "$current" ]; then
            # Said once per new certificate; retried every interval until the config is fixed.
            # The certificate loads on its own (checked above): the configuration is what fails.
            echo "scaffold: new certificate (generation $current) NOT loaded: 'nginx -t' fails:" >&2
            echo "$output" >&2
            echo "scaffold: fix the configuration; nginx reloads as soon as 'nginx -t' passes." >&2
            failed=$current
        fi
    done
}

# Detached from the entrypoint's pipes: stdin would otherwise be the entrypoint's file list.
watch_certificate </dev/null &
echo "$0: watching $signal every ${interval}s"
