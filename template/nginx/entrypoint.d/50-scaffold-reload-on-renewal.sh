#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts: start a small watcher that reloads
# nginx when certbot signals a new certificate. certbot's deploy hook writes a new value to
# the signal file after every issuance or renewal; the watcher checks the configuration with
# `nginx -t` and only then reloads (never restarts), so a broken edit never takes the site
# down. No Docker socket is involved.
set -eu

signal=/etc/letsencrypt/scaffold/generation
interval=${SCAFFOLD_CERT_CHECK_SECONDS:-5}

read_signal() {
    cat "$signal" 2>/dev/null || true
}

watch_certificate() {
    seen=$(read_signal)
    failed=""
    while sleep "$interval"; do
        current=$(read_signal)
        [ "$current" = "$seen" ] && continue
        if output=$(nginx -t 2>&1); then
            if nginx -s reload; then
                echo "scaffold: new certificate (generation $current): nginx reloaded"
                seen=$current
                failed=""
            fi
        elif [ "$failed" != "$current" ]; then
            # Said once per new certificate; retried every interval until the config is fixed.
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
