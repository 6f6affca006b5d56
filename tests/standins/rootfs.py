"""Root file systems from Debian packages, turned into Docker images.

One debootstrap'ed minbase (cached) is copied per role and the role's packages are installed with apt in
a chroot. Every chroot runs in its own mount namespace (`unshare --mount`), so the /proc mounted there
disappears with the process even when a build is killed: the cache never holds live mounts that a later
`rm -rf` could walk into.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker

from .roles import DEFAULT_PATH

DEBOOTSTRAP_ARGS = ("--variant=minbase",)
APT_INSTALL = (
    "apt-get install -y -q -o APT::Install-Recommends=0 -o Dpkg::Options::=--force-confdef"
    " -o Dpkg::Options::=--force-confold"
)
# Like Debian's slim images: no docs, manuals or translations are unpacked.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
CLEAN_GLOBS = (
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "usr/sbin/policy-rc.d",
    "root/.cache",
)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, which is what one needs to debug a build."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def chroot_sh(root: Path, script: str) -> str:
    """Run a shell script inside `root` with /proc mounted, in a private mount namespace."""
    env = {
        "PATH": DEFAULT_PATH,
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "HOME": "/root",
    }
    wrapper = 'mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -ec "$2"'
    unshare = ["unshare", "--mount", "--propagation", "private", "--"]
    proc = run([*unshare, "sh", "-c", wrapper, "sh", str(root), script], env=env)
    return proc.stdout


def remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        run(["rm", "-rf", "--one-file-system", str(path)])


def build_base(target: Path, debs: Path, suite: str) -> None:
    """debootstrap a minbase of Debian `suite` with package lists, dpkg excludes and no service starts."""
    tmp = target.with_name(target.name + ".tmp")
    remove_tree(tmp)
    debs.mkdir(parents=True, exist_ok=True)
    run(
        [
            "unshare", "--mount", "--propagation", "private", "--",
            "debootstrap", f"--cache-dir={debs.resolve()}", *DEBOOTSTRAP_ARGS, suite, str(tmp),
        ]
    )  # fmt: skip
    for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (tmp / "etc/dpkg/dpkg.cfg.d/standin-excludes").write_text(DPKG_EXCLUDES)
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    tmp.rename(target)


def _link_debs(source: Path, destination: Path) -> None:
    """Hard-link cached .debs so apt in each chroot has its own archive dir (no shared apt lock)."""
    destination.mkdir(parents=True, exist_ok=True)
    for deb in source.glob("*.deb"):
        target = destination / deb.name
        if not target.exists():
            os.link(deb, target)


def _apt(packages: tuple[str, ...], download_only: bool = False) -> str:
    """apt-get install, refreshing the package lists once if the cached ones have gone stale."""
    names = " ".join(packages)
    flag = " --download-only" if download_only else ""
    return f"{APT_INSTALL}{flag} {names} || {{ apt-get update -q && {APT_INSTALL}{flag} {names}; }}"


def prefetch(base: Path, debs: Path, packages: tuple[str, ...]) -> None:
    """Download every .deb the roles need in one apt run, so parallel role builds find them cached."""
    archives = base / "var/cache/apt/archives"
    _link_debs(debs, archives)
    try:
        chroot_sh(base, _apt(packages, download_only=True))
        _link_debs(archives, debs)
    finally:
        for deb in archives.glob("*.deb"):
            deb.unlink()


def install(root: Path, debs: Path, packages: tuple[str, ...], pre: str, post: str, files: dict) -> None:
    """Install role packages and files into a copy of the base."""
    archives = root / "var/cache/apt/archives"
    _link_debs(debs, archives)
    if pre.strip():
        chroot_sh(root, pre)
    chroot_sh(root, _apt(packages))
    _link_debs(archives, debs)
    for destination, (content, mode) in files.items():
        path = root / destination.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    if post.strip():
        chroot_sh(root, post)


def clean(root: Path) -> None:
    """Drop what an image does not need at run time (caches, docs, logs, build-time helpers)."""
    for path in root.glob("usr/share/doc/*/*"):
        if path.name != "copyright":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for pattern in CLEAN_GLOBS:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name in ("etc/resolv.conf", "etc/hostname"):
        path = root / name
        if path.exists() or path.is_symlink():
            path.unlink()
        path.write_text("")


def _tar_chunks(root: Path) -> Iterator[bytes]:
    proc = subprocess.Popen(
        [
            "tar", "--numeric-owner", "--xattrs", "-C", str(root), "-c",
            "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", ".",
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            yield chunk
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"tar of {root} failed with {proc.returncode}")


def import_image(client: docker.DockerClient, root: Path, reference: str, dockerfile: str) -> float:
    """docker import the tree, then apply metadata import cannot set (STOPSIGNAL) with a tiny build.

    Returns the seconds spent.
    """
    started = time.monotonic()
    repository, tag = reference.rsplit(":", 1)
    rootfs_tag = f"{tag}-rootfs"
    client.api.import_image(src=_tar_chunks(root), repository=repository, tag=rootfs_tag, stream_src=True)
    try:
        client.images.build(
            fileobj=io.BytesIO(f"FROM {repository}:{rootfs_tag}\n{dockerfile}".encode()),
            tag=reference,
            rm=True,
            forcerm=True,
            pull=False,
        )
    finally:
        client.api.remove_image(f"{repository}:{rootfs_tag}", noprune=True)
    return time.monotonic() - started
