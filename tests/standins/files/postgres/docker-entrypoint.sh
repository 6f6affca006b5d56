#!/usr/bin/env bash
# Entrypoint of the postgres stand-in, following the official postgres image's contract:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB (and *_FILE variants), POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS, PGDATA, /docker-entrypoint-initdb.d/, dropping root to the postgres user.
set -Eeo pipefail

log() { printf '%s\n' "$*"; }

# usage: file_env VAR [DEFAULT]: VAR or the contents of the file named by VAR_FILE.
file_env() {
    local var="$1" file_var="${1}_FILE" default="${2:-}" value
    if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
        log "error: both $var and $file_var are set (but are exclusive)" >&2
        exit 1
    fi
    value="$default"
    if [ "${!var:-}" ]; then
        value="${!var}"
    elif [ "${!file_var:-}" ]; then
        value="$(< "${!file_var}")"
    fi
    export "$var"="$value"
    unset "$file_var"
}

setup_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    export POSTGRES_HOST_AUTH_METHOD
    DATABASE_ALREADY_EXISTS=
    if [ -s "$PGDATA/PG_VERSION" ]; then
        DATABASE_ALREADY_EXISTS=true
    fi
}

create_directories() {
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    if [ "$(id -u)" = '0' ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres: '{}' +
        find /var/run/postgresql \! -user postgres -exec chown postgres: '{}' +
    fi
}

verify_minimum_env() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
        cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
        exit 1
    fi
    if [ "${#POSTGRES_PASSWORD}" -ge 100 ]; then
        log "WARNING: The supplied POSTGRES_PASSWORD is 100+ characters; it may not work." >&2
    fi
}

init_database_dir() {
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
    {
        printf '\n'
        if [ "$POSTGRES_HOST_AUTH_METHOD" = 'trust' ]; then
            printf '# warning trust is enabled for all connections\n'
        fi
        printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"
}

temp_server_start() {
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
}

temp_server_stop() {
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
}

run_psql() {
    PGPASSWORD= psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

setup_db() {
    if [ "$POSTGRES_DB" != 'postgres' ]; then
        run_psql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
    fi
}

process_init_files() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    log "$0: running $f"
                    "$f"
                else
                    log "$0: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql) log "$0: running $f"; run_psql --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "$0: running $f"; gunzip -c "$f" | run_psql --dbname "$POSTGRES_DB" ;;
            *)
                if [ -e "$f" ]; then
                    log "$0: ignoring $f"
                fi
                ;;
        esac
    done
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" = 'postgres' ]; then
    setup_env
    create_directories
    if [ "$(id -u)" = '0' ]; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
    fi
    if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
        verify_minimum_env
        init_database_dir
        export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
        temp_server_start
        setup_db
        process_init_files
        temp_server_stop
        unset PGPASSWORD
        log ''
        log 'PostgreSQL init process complete; ready for start up.'
        log ''
    else
        log ''
        log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
        log ''
    fi
fi

exec "$@"
