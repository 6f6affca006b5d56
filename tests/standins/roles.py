"""What goes into each stand-in image: Debian packages, our files, set-up shell, image metadata.

Each role mirrors one official image's contract; the comments say where a detail comes from so that a
reader can check it against the official image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).parent
FILES = HERE / "files"
AUTHENTIK = HERE / "authentik"

SUITE = "trixie"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Role:
    """One stand-in image."""

    name: str
    packages: tuple[str, ...]
    suite: str = SUITE  # the Debian release the image is built from
    # destination in the image -> (source file, mode)
    files: dict[str, tuple[Path, int]] = field(default_factory=dict)
    pre_install: str = ""  # shell in the chroot before apt (fixed user ids must come first)
    post_install: str = ""  # shell in the chroot after apt and after `files` were copied
    dockerfile: str = ""  # metadata instructions applied on top of the imported root file system
    pebble_pki: bool = False  # generate the CA and WFE certificate of pebble


def _dir_files(source: Path, destination: str, pattern: str = "*") -> dict[str, tuple[Path, int]]:
    return {
        f"{destination}/{path.name}": (path, 0o755 if path.stat().st_mode & 0o111 else 0o644)
        for path in sorted(source.glob(pattern))
        if path.is_file()
    }


NGINX = Role(
    name="nginx",
    packages=("nginx", "gettext-base"),
    files={
        "/docker-entrypoint.sh": (FILES / "nginx/docker-entrypoint.sh", 0o755),
        "/docker-entrypoint.d/10-listen-on-ipv6-by-default.sh": (
            FILES / "nginx/10-listen-on-ipv6-by-default.sh",
            0o755,
        ),
        "/docker-entrypoint.d/15-local-resolvers.envsh": (FILES / "nginx/15-local-resolvers.envsh", 0o755),
        "/docker-entrypoint.d/20-envsubst-on-templates.sh": (
            FILES / "nginx/20-envsubst-on-templates.sh",
            0o755,
        ),
        "/etc/nginx/nginx.conf": (FILES / "nginx/nginx.conf", 0o644),
        "/etc/nginx/conf.d/default.conf": (FILES / "nginx/default.conf", 0o644),
        "/usr/share/nginx/html/index.html": (FILES / "nginx/index.html", 0o644),
        "/usr/share/nginx/html/50x.html": (FILES / "nginx/50x.html", 0o644),
    },
    # The official image's nginx user and group (uid/gid 101).
    pre_install="""
groupadd --system --gid 101 nginx
useradd --system --gid nginx --no-create-home --home-dir /nonexistent --comment "nginx user" \
    --shell /bin/false --uid 101 nginx
""",
    # Drop Debian's sites-enabled layout and helpers the official image does not have (a config that
    # includes proxy_params would work here and fail in production). Temp files go where the official
    # image keeps them (/var/cache/nginx), so a read-only root with a tmpfs there behaves the same.
    post_install="""
cd /etc/nginx
rm -rf sites-available sites-enabled snippets modules-available modules-enabled proxy_params \
    fastcgi.conf koi-utf koi-win win-utf
mkdir -p /usr/lib/nginx/modules && ln -sfn /usr/lib/nginx/modules /etc/nginx/modules
rm -rf /var/www /var/lib/nginx /usr/share/nginx/modules
mkdir -p /var/cache/nginx && chown nginx:nginx /var/cache/nginx
ln -s /var/cache/nginx /var/lib/nginx
rm -rf /var/log/nginx && mkdir -p /var/log/nginx
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log
sum=$(md5sum /etc/nginx/conf.d/default.conf | cut -d' ' -f1)
sed -i "s/@DEFAULT_CONF_MD5@/$sum/" /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh
""",
    dockerfile="""
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
""",
)

CERTBOT = Role(
    name="certbot",
    # The official image (python:alpine based) has openssl and CA certificates next to certbot.
    packages=("certbot", "openssl", "ca-certificates"),
    post_install="mkdir -p /etc/letsencrypt /var/lib/letsencrypt /var/log/letsencrypt /opt/certbot",
    dockerfile="""
EXPOSE 80 443
VOLUME /etc/letsencrypt /var/lib/letsencrypt
WORKDIR /opt/certbot
ENTRYPOINT ["certbot"]
""",
)

# certbot/dns-rfc2136 is certbot/certbot with the plugin installed: the same entrypoint, paths and volumes.
CERTBOT_DNS_RFC2136 = replace(
    CERTBOT, name="certbot_dns_rfc2136", packages=(*CERTBOT.packages, "python3-certbot-dns-rfc2136")
)

# Not a service of the generated stack: the DNS server a DNS-01 test stack talks to (a home router or a
# self-hosted BIND in real life). Configured at start from ZONE, TSIG_NAME, TSIG_SECRET, TSIG_ALGORITHM.
DNS = Role(
    name="dns",
    packages=("bind9", "bind9-dnsutils"),
    files={"/usr/local/bin/dns-entrypoint.sh": (FILES / "dns/dns-entrypoint.sh", 0o755)},
    dockerfile="""
EXPOSE 53/udp 53/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/dns-entrypoint.sh"]
""",
)

POSTGRES = Role(
    name="postgres",
    packages=("postgresql",),
    files={"/usr/local/bin/docker-entrypoint.sh": (FILES / "postgres/docker-entrypoint.sh", 0o755)},
    # postgres:*-alpine runs as uid/gid 70; an existing data volume keeps working across the images.
    # No cluster is created by the package: the entrypoint runs initdb on an empty PGDATA.
    pre_install="""
groupadd --system --gid 70 postgres
useradd --system --gid postgres --uid 70 --home-dir /var/lib/postgresql --shell /bin/sh postgres
mkdir -p /var/lib/postgresql /etc/postgresql-common/createcluster.d
chown postgres:postgres /var/lib/postgresql
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/standin.conf
""",
    # LLVM (JIT) alone would double the image; PostgreSQL runs without it (jit is then unavailable).
    # The server binaries go on PATH directly like in the official image, and listen_addresses='*' is
    # the default of every new cluster, as the official image patches its sample config.
    post_install="""
status='${db:Status-Abbrev} ${Package}\\n'
for pkg in $(dpkg-query -W -f "$status" 'libllvm*' 'libz3-*' | awk '$1=="ii"{print $2}'); do
    dpkg --purge --force-depends "$pkg"
done
rm -rf /usr/lib/postgresql/*/lib/llvmjit* /usr/lib/postgresql/*/lib/bitcode
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
for f in "$bindir"/*; do ln -sf "$f" /usr/local/bin/; done
for sample in /usr/share/postgresql/*/postgresql.conf.sample; do
    sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" "$sample"
    grep -F "listen_addresses = '*'" "$sample"
done
mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data
chown postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql
chown postgres:postgres /var/lib/postgresql/data && chmod 1777 /var/lib/postgresql/data
""",
    dockerfile="""
ENV LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
""",
)

AUTHENTIK_ROLE = Role(
    name="authentik",
    packages=("python3", "python3-psycopg2", "python3-yaml", "dumb-init", "openssl"),
    files={
        "/usr/local/bin/ak": (AUTHENTIK / "ak", 0o755),
        **_dir_files(AUTHENTIK, "/usr/lib/python3/dist-packages/ak_standin", "*.py"),
    },
    # The official image runs as uid 1000 with TMPDIR=/dev/shm/ and these data directories.
    pre_install="""
groupadd --system --gid 1000 authentik
useradd --system --gid authentik --uid 1000 --home-dir /authentik --no-create-home --shell /bin/bash authentik
""",
    post_install="""
mkdir -p /data /templates /certs /media /authentik /blueprints
chown authentik:authentik /data /templates /certs /media /authentik
python3 -m compileall -q /usr/lib/python3/dist-packages/ak_standin
""",
    dockerfile="""
ENV TMPDIR=/dev/shm/ PYTHONUNBUFFERED=1
WORKDIR /
USER 1000
EXPOSE 9000 9443
HEALTHCHECK --interval=30s --timeout=30s --start-period=120s --retries=3 CMD ["ak", "healthcheck"]
ENTRYPOINT ["dumb-init", "--", "ak"]
""",
)

PEBBLE = Role(
    name="pebble",
    packages=("pebble",),
    files={"/test/config/pebble-config.json": (FILES / "pebble/pebble-config.json", 0o644)},
    pebble_pki=True,
    # pebble ignores SIGTERM as PID 1; its state is in memory, so a kill is the honest stop.
    dockerfile="""
ENV PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
EXPOSE 14000 15000
STOPSIGNAL SIGKILL
ENTRYPOINT ["pebble"]
CMD ["-config", "/test/config/pebble-config.json"]
""",
)

CLIENT = Role(
    name="client",
    packages=("curl", "openssl", "python3", "wrk", "nghttp2-client", "ca-certificates"),
    dockerfile="""
STOPSIGNAL SIGKILL
CMD ["sleep", "infinity"]
""",
)

# A web app to protect with forward auth: answers every request with what it received (JSON) and
# echoes WebSocket messages, on port 8080 (ECHO_PORT). Shares the authentik stand-in's HTTP code.
ECHOAPP = Role(
    name="echoapp",
    packages=("python3", "python3-yaml"),
    files={
        "/usr/local/bin/echo-app": (FILES / "echoapp/echo-app", 0o755),
        **_dir_files(AUTHENTIK, "/usr/lib/python3/dist-packages/ak_standin", "*.py"),
    },
    post_install="python3 -m compileall -q /usr/lib/python3/dist-packages/ak_standin",
    dockerfile="""
ENV PYTHONUNBUFFERED=1
USER 65534
EXPOSE 8080
ENTRYPOINT ["echo-app"]
""",
)

# The same contract on the PostgreSQL major of the previous Debian release (bookworm: 15, trixie: 17),
# so that a real major upgrade (dump, new volume, restore) runs in the tests.
POSTGRES_OLDER = replace(POSTGRES, name="postgres_older", suite="bookworm")

# Slowest first: they start building first when built in parallel.
ROLES: tuple[Role, ...] = (
    POSTGRES,
    POSTGRES_OLDER,
    CERTBOT,
    CERTBOT_DNS_RFC2136,
    CLIENT,
    AUTHENTIK_ROLE,
    PEBBLE,
    DNS,
    NGINX,
    ECHOAPP,
)
