"""Public API: make sure the stand-in images exist and say what they are called.

Images are tagged with a hash of everything that goes into them, so a test run reuses them as long as
nothing changed (a no-op costs a few API calls) and rebuilds exactly the ones that did. Builds are
serialised between processes with a file lock in the cache directory.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from . import pki, rootfs
from .roles import ROLES, SUITE, Role

LOG = logging.getLogger("standins")
REPOSITORY = "scaffold-standin"
LABEL = "org.scaffold.standin"
PEBBLE_CA_LABEL = f"{LABEL}.pebble-ca"
HERE = Path(__file__).parent
# Sources whose change must rebuild every image (how images are made).
BUILDER_SOURCES = (HERE / "rootfs.py", HERE / "pki.py")


@dataclass(frozen=True)
class StandinImages:
    """References of the stand-in images, usable as `image:` in a compose file."""

    nginx: str
    certbot: str
    certbot_dns_rfc2136: str  # certbot/dns-rfc2136: certbot with the rfc2136 DNS plugin
    dns: str  # BIND accepting TSIG-signed dynamic updates (the DNS-01 tests' DNS server)
    postgres: str
    postgres_older: str  # the same contract, one Debian release (and PostgreSQL major) older
    authentik: str
    pebble: str
    client: str
    echoapp: str  # a web app to protect: echoes requests as JSON and WebSocket messages
    pebble_ca_pem: str  # CA of pebble's own HTTPS certificate, for REQUESTS_CA_BUNDLE in certbot


def cache_dir() -> Path:
    """Where .debs, the base root file system and the build lock live."""
    default = Path.home() / ".cache" / "scaffold-standins"
    return Path(os.environ.get("SCAFFOLD_STANDIN_CACHE") or default)


def role_files(role: Role) -> dict[str, tuple[bytes, int]]:
    return {dest: (src.read_bytes(), mode) for dest, (src, mode) in sorted(role.files.items())}


def base_key(suite: str) -> str:
    material = json.dumps([*rootfs.DEBOOTSTRAP_ARGS, suite]) + rootfs.DPKG_EXCLUDES
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def base_dir(cache: Path, suite: str) -> Path:
    return cache / f"base-{suite}-{base_key(suite)}"


def debs_dir(cache: Path, suite: str) -> Path:
    """Downloaded .debs, one folder per suite (the same package has other versions elsewhere)."""
    return cache / ("debs" if suite == SUITE else f"debs-{suite}")


def role_digest(role: Role) -> str:
    """12 hex digits over suite, packages, scripts, files and the builder itself."""
    h = hashlib.sha256()
    spec = {
        "suite": role.suite,
        "base": base_key(role.suite),
        "name": role.name,
        "packages": role.packages,
        "pre": role.pre_install,
        "post": role.post_install,
        "dockerfile": role.dockerfile,
        "pebble_pki": role.pebble_pki,
    }
    h.update(json.dumps(spec, sort_keys=True).encode())
    for dest, (content, mode) in role_files(role).items():
        h.update(f"\0{dest}\0{mode:o}\0".encode())
        h.update(hashlib.sha256(content).digest())
    for source in BUILDER_SOURCES:
        h.update(source.read_bytes())
    return h.hexdigest()[:12]


def reference(role: Role) -> str:
    return f"{REPOSITORY}/{role.name}:{role_digest(role)}"


def _present(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


@contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            LOG.info("another process is building stand-in images; waiting")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_role(client: docker.DockerClient, role: Role, ref: str, base: Path, cache: Path) -> dict:
    """Copy the base, install the role, import it; returns timings for the report."""
    digest = ref.rsplit(":", 1)[1]
    work = cache / "work" / f"{role.name}-{digest}"
    rootfs.remove_tree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        rootfs.run(["cp", "-a", "--reflink=auto", str(base), str(work)])
        files = role_files(role)
        dockerfile = role.dockerfile
        if role.pebble_pki:
            made = pki.make_pebble_pki(digest)
            files["/test/certs/localhost/cert.pem"] = (made.cert_pem.encode(), 0o644)
            files["/test/certs/localhost/key.pem"] = (made.key_pem.encode(), 0o644)
            files["/test/certs/pebble.minica.pem"] = (made.ca_pem.encode(), 0o644)
            encoded = base64.b64encode(made.ca_pem.encode()).decode()
            dockerfile += f'\nLABEL {PEBBLE_CA_LABEL}="{encoded}"\n'
        dockerfile += f'\nLABEL {LABEL}.role="{role.name}" {LABEL}.digest="{digest}"\n'
        debs = debs_dir(cache, role.suite)
        rootfs.install(work, debs, role.packages, role.pre_install, role.post_install, files)
        rootfs.clean(work)
        installed = time.monotonic()
        rootfs.import_image(client, work, ref, dockerfile)
    finally:
        rootfs.remove_tree(work)
    done = time.monotonic()
    return {"role": role.name, "install_s": installed - started, "import_s": done - installed}


def _check_build_host() -> None:
    """Fail early and clearly where the build cannot work, instead of deep inside debootstrap."""
    if os.geteuid() != 0:
        raise RuntimeError("building the stand-in images needs root (debootstrap, chroot, unshare)")
    missing = [
        tool for tool in ("debootstrap", "unshare", "chroot", "openssl", "tar") if not shutil.which(tool)
    ]
    if missing:
        raise RuntimeError(
            f"building the stand-in images needs these tools on the host: {', '.join(missing)}"
        )


def build_missing(client: docker.DockerClient, jobs: int = 3) -> list[dict]:
    """Build every stand-in whose tag is absent; returns per-role timings (empty when none)."""
    cache = cache_dir()
    with _build_lock(cache):
        todo = [(role, reference(role)) for role in ROLES]
        todo = [(role, ref) for role, ref in todo if _present(client, ref) is None]
        if not todo:
            return []
        _check_build_host()
        report: list[dict] = []
        started = time.monotonic()
        for suite in sorted({role.suite for role, _ in todo}):
            debs, base = debs_dir(cache, suite), base_dir(cache, suite)
            if not base.exists():
                LOG.info("debootstrap %s minbase into %s", suite, base)
                rootfs.build_base(base, debs, suite)
                elapsed = time.monotonic() - started
                report.append({"role": f"base-{suite}", "install_s": elapsed, "import_s": 0.0})
            fetch_started = time.monotonic()
            packages = tuple(sorted({p for role, _ in todo if role.suite == suite for p in role.packages}))
            rootfs.prefetch(base, debs, packages)
            report.append(
                {"role": f"prefetch-{suite}", "install_s": time.monotonic() - fetch_started, "import_s": 0.0}
            )
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [
                pool.submit(_build_role, client, role, ref, base_dir(cache, role.suite), cache)
                for role, ref in todo
            ]
            for future in futures:
                entry = future.result()
                LOG.info("built %s in %.1f s", entry["role"], entry["install_s"] + entry["import_s"])
                report.append(entry)
        report.append({"role": "total", "install_s": time.monotonic() - started, "import_s": 0.0})
        return report


def _resolve(client: docker.DockerClient) -> StandinImages | None:
    refs: dict[str, str] = {}
    pebble_ca = ""
    for role in ROLES:
        ref = reference(role)
        image = _present(client, ref)
        if image is None:
            return None
        refs[role.name] = ref
        if role.pebble_pki:
            labels = image.attrs.get("Config", {}).get("Labels") or {}
            pebble_ca = base64.b64decode(labels[PEBBLE_CA_LABEL]).decode()
    return StandinImages(pebble_ca_pem=pebble_ca, **refs)


def ensure_standin_images(client: docker.DockerClient) -> StandinImages:
    """The stand-in images, built first if any is missing (a few minutes cold, milliseconds warm)."""
    images = _resolve(client)
    if images is not None:
        return images
    build_missing(client)
    images = _resolve(client)
    if images is None:  # pragma: no cover - build_missing raises on failure
        raise RuntimeError("stand-in images missing right after building them")
    return images
