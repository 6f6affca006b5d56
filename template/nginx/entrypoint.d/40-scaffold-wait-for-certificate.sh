#!/bin/sh
# Run by the nginx image's entrypoint before nginx starts: choose the certificate nginx serves.
#
# nginx reads its certificate through $served (snippets/tls.conf), a link this script points at
# certbot's `current` pair, or at the self-signed placeholder when `current` cannot be loaded.
# A pair nginx cannot load (garbage, a key that does not match) would stop nginx at start, port
# 80 too, and then HTTP-01 could never fix it; the placeholder keeps both ports up until certbot
# provides a certificate it checked. At first start certbot creates both within a second: wait
# for them here instead of letting nginx fail and restart in a loop.
#
# Relies only on what the official nginx images contain: POSIX sh, cat, mkdir, mktemp, ln,
# readlink, sed, rm, and nginx itself (`-e` needs nginx >= 1.19.5). The pair is tried with
# `nginx -t` on a one-server configuration: that is what nginx checks at start (the chain and the
# key parse, the key matches the certificate). Names and dates are checked by certbot's helper
# (certbot/scaffold_certbot.py) before it switches `current`: the nginx images have no openssl
# command, and nginx starts with an expired certificate anyway.
#
# Usage: no argument (the entrypoint): wait, then choose. `current`: point nginx at `current` if
# nginx can load it, else print why and exit 1 (the renewal watcher, 50-scaffold-*.sh). `hosts`:
# the same for every app host of conf.d/apps/ (one lineage each, under $state/hosts/HOST/).
set -eu

state=/etc/letsencrypt/scaffold
# nginx's cache folder: writable in every nginx image, and the tmpfs of a read-only container.
work_root=/var/cache/nginx/scaffold
served=$work_root/served
limit=${SCAFFOLD_CERT_WAIT_SECONDS:-120}
case $limit in
'' | *[!0-9]*)
    echo "$0: SCAFFOLD_CERT_WAIT_SECONDS='$limit' is not a whole number of seconds; using 120" >&2
    limit=120
    ;;
esac

# Why nginx cannot load the pair in directory $1, on stdout; exit 0 when it can.
pair_problem() {
    dir=$1
    if [ ! -s "$dir/fullchain.pem" ] || [ ! -s "$dir/privkey.pem" ]; then
        echo "fullchain.pem or privkey.pem is missing or empty"
        return 1
    fi
    mkdir -p "$work_root"
    work=$(mktemp -d "$work_root/check.XXXXXX") || {
        echo "cannot create a folder in $work_root to test the certificate"
        return 1
    }
    cat >"$work/nginx.conf" <<EOF
pid $work/nginx.pid;
events {}
http {
    access_log off;
    server {
        listen 127.0.0.1:9 ssl;
        ssl_certificate     $dir/fullchain.pem;
        ssl_certificate_key $dir/privkey.pem;
    }
}
EOF
    status=0
    output=$(nginx -t -q -e stderr -c "$work/nginx.conf" 2>&1) || status=$?
    rm -rf "$work"
    [ "$status" -eq 0 ] && return 0
    # nginx's first [emerg] line, without its time stamp and process ids.
    echo "$output" | sed -n 's/^.*\[emerg\] [0-9#]*: //p; s/^nginx: \[emerg\] //p' | sed -n 1p
    return 1
}

serve() {
    mkdir -p "$work_root"
    ln -sfn "$1" "$served"
}

# The app hosts nginx's configuration serves (conf.d/apps/*.conf, one certificate each).
app_hosts() {
    for conf in /etc/nginx/conf.d/apps/*.conf; do
        [ -f "$conf" ] || continue
        sed -n 's#^[[:space:]]*ssl_certificate[[:space:]][[:space:]]*/var/cache/nginx/scaffold/hosts/\([^/]*\)/fullchain\.pem;.*#\1#p' "$conf"
    done
}

# Point nginx at each app host's certificate: certbot's `current` for it when nginx can load it,
# else that host's placeholder, else (certbot has not seen the host yet) whatever authentik's site
# serves, so that nginx starts and reloads; certbot's signal follows within seconds.
serve_app_hosts() {
    mkdir -p "$work_root/hosts"
    for host in $(app_hosts); do
        # Not `dir`: pair_problem sets that (sh has no local variables).
        host_state=$state/hosts/$host
        if pair_problem "$host_state/current" >/dev/null; then
            target=$host_state/current
        elif pair_problem "$host_state/placeholder" >/dev/null; then
            target=$host_state/placeholder
        else
            target=$(readlink "$served" 2>/dev/null || echo "$state/placeholder")
        fi
        [ "$(readlink "$work_root/hosts/$host" 2>/dev/null || true)" = "$target" ] || ln -sfn "$target" "$work_root/hosts/$host"
    done
}

describe_current() {
    target=$(readlink "$state/current" 2>/dev/null || true)
    echo "$state/current${target:+ (-> $target)}"
}

case "${1:-start}" in
current)
    problem=$(pair_problem "$state/current") || {
        echo "$problem"
        exit 1
    }
    serve "$state/current"
    exit 0
    ;;
hosts)
    serve_app_hosts
    exit 0
    ;;
start) ;;
*)
    echo "usage: $0 [current|hosts]" >&2
    exit 2
    ;;
esac

waited=0
while :; do
    if problem=$(pair_problem "$state/current"); then
        serve "$state/current"
        echo "$0: serving the certificate at $(describe_current)"
        serve_app_hosts
        exit 0
    fi
    # A `current` that exists but cannot be loaded is replaced at once; a missing one (first
    # start: certbot creates it within a second) only after the wait.
    if { [ -L "$state/current" ] || [ "$waited" -ge "$limit" ]; } && pair_problem "$state/placeholder" >/dev/null; then
        serve "$state/placeholder"
        echo "$0: NOT serving $(describe_current): nginx cannot load it ($problem). Serving the self-signed placeholder instead (ports 80 and 443 stay up); certbot replaces it with a certificate it checked: see 'docker compose logs certbot'." >&2
        serve_app_hosts
        exit 0
    fi
    if [ "$waited" -ge "$limit" ]; then
        echo "$0: no certificate nginx can load at $state/current or $state/placeholder after ${limit}s ($problem)." >&2
        echo "$0: the certbot service creates them: check 'docker compose ps certbot' and 'docker compose logs certbot'." >&2
        exit 1
    fi
    if [ "$waited" -eq 0 ]; then
        echo "$0: waiting for the certbot service to provide a certificate"
    fi
    sleep 1
    waited=$((waited + 1))
done
