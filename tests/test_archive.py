"""The backup archive format without Docker: what is written, what is refused, what comes back."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from scaffold.archive import (
    DATABASE,
    ArchiveError,
    ArchiveWriter,
    Manifest,
    PostgresInfo,
    archives_of,
    extract,
    project_paths,
    prune,
    verify,
)

DUMP = b"PGDMP" + os.urandom(200_000)  # big enough that a cut lands inside a member


def make_project(root: Path) -> Path:
    (root / "data/media").mkdir(parents=True)
    (root / "data/media/logo.png").write_bytes(os.urandom(3000))
    (root / ".env").write_text("AUTHENTIK_SECRET_KEY=s3cret\n")
    (root / ".env").chmod(0o600)
    (root / ".copier-answers.yml").write_text("project_name: demo\n")
    (root / "letsencrypt/live/d").mkdir(parents=True)
    (root / "letsencrypt/archive").mkdir()
    (root / "letsencrypt/archive/cert1.pem").write_text("CERT")
    (root / "letsencrypt/live/d/cert.pem").symlink_to("../../archive/cert1.pem")
    (root / ".scaffold/backups").mkdir(parents=True)
    (root / ".scaffold/backups/old.env").write_text("old secret")
    (root / ".scaffold/state.json").write_text("{}")
    return root


def write_archive(project: Path, target: Path, *, major: int = 17) -> Path:
    writer = ArchiveWriter(target)
    writer.add_stream(DATABASE, io.BytesIO(DUMP), len(DUMP))
    for name, path in project_paths(project, exclude=(writer.temp,)):
        writer.add_path(name, path)
    manifest = Manifest(
        created="2026-11-30T08:00:00Z",
        project="demo",
        template_commit="abc",
        authentik_tag="2026.8.7",
        postgresql=PostgresInfo(f"{major}.6", major, "UTF8"),
        members=tuple(writer.members),
    )
    return writer.commit(manifest)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_archive(make_project(tmp_path / "project"), tmp_path / "a.tar.gz")


def rewrite(source: Path, target: Path, change) -> Path:
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for info in old:
            data = old.extractfile(info).read() if info.isreg() else None
            info, data = change(info, data)
            if info is None:
                continue
            if data is not None:
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)
    return target


def test_archive_is_0600_complete_and_leaves_no_temporary_file(archive: Path) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert [p.name for p in archive.parent.iterdir() if p.name.startswith(".")] == []
    manifest = verify(archive)
    names = {m.name for m in manifest.members}
    assert {DATABASE, "project/.env", "project/data/media/logo.png", "project/.scaffold/state.json"} <= names
    assert "project/.scaffold/backups/old.env" not in names, "update backups (old secrets) must stay out"
    link = next(m for m in manifest.members if m.name == "project/letsencrypt/live/d/cert.pem")
    assert link.kind == "symlink" and link.target == "../../archive/cert1.pem"


def test_abort_removes_the_partial_archive(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / "x.tar.gz")
    writer.add_stream(DATABASE, io.BytesIO(DUMP), len(DUMP))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_extract_brings_back_files_links_modes_and_the_dump(archive: Path, tmp_path: Path) -> None:
    manifest = verify(archive)
    dest = tmp_path / "restored"
    dest.mkdir()
    dump = io.BytesIO()
    extract(archive, dest, dump, manifest)
    assert dump.getvalue() == DUMP
    source = tmp_path / "project"
    assert (dest / "data/media/logo.png").read_bytes() == (source / "data/media/logo.png").read_bytes()
    assert stat.S_IMODE((dest / ".env").stat().st_mode) == 0o600
    assert os.readlink(dest / "letsencrypt/live/d/cert.pem") == "../../archive/cert1.pem"
    assert (dest / "letsencrypt/live/d/cert.pem").read_text() == "CERT"
    assert not (dest / ".scaffold/backups").exists()


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.98])
def test_truncated_archive_is_refused(archive: Path, tmp_path: Path, fraction: float) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * fraction)])
    with pytest.raises(ArchiveError, match="truncated or damaged"):
        verify(cut)


def test_member_with_another_checksum_is_refused(archive: Path, tmp_path: Path) -> None:
    def flip(info, data):
        if info.name == "project/data/media/logo.png":
            data = bytes([data[0] ^ 1]) + data[1:]
        return info, data

    with pytest.raises(ArchiveError, match=r"logo\.png has a different SHA-256"):
        verify(rewrite(archive, tmp_path / "b.tar.gz", flip))


def test_missing_and_extra_members_are_refused(archive: Path, tmp_path: Path) -> None:
    def swap(info, data):
        if info.name == "project/.env":
            return info.replace(name="project/.env.extra"), data
        return info, data

    with pytest.raises(ArchiveError, match=r"project/\.env is missing.*\.env\.extra is not in the manifest"):
        verify(rewrite(archive, tmp_path / "c.tar.gz", swap))


def test_archive_without_manifest_is_refused(archive: Path, tmp_path: Path) -> None:
    def drop(info, data):
        return (None, None) if info.name == "manifest.json" else (info, data)

    with pytest.raises(ArchiveError, match="ends before its manifest"):
        verify(rewrite(archive, tmp_path / "d.tar.gz", drop))


def test_link_out_of_the_project_is_refused_on_extract(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / "escape").symlink_to("../../../etc/passwd")
    archive = write_archive(project, tmp_path / "e.tar.gz")
    manifest = verify(archive)  # consistent with its own manifest, so only the extract can catch it
    dest = tmp_path / "restored"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="refusing to restore project/escape"):
        extract(archive, dest, io.BytesIO(), manifest)


def test_manifest_of_another_format_is_refused(archive: Path, tmp_path: Path) -> None:
    def other(info, data):
        if info.name == "manifest.json":
            data = json.dumps({**json.loads(data), "format_version": 2}).encode()
        return info, data

    with pytest.raises(ArchiveError, match="format version 2"):
        verify(rewrite(archive, tmp_path / "f.tar.gz", other))


def test_prune_keeps_the_newest_of_the_project_only(tmp_path: Path) -> None:
    names = [
        "20261101T000000Z-demo.tar.gz",
        "20261102T000000Z-demo.tar.gz",
        "20261102T000000Z-demo-2.tar.gz",
        "20261103T000000Z-demo.tar.gz",
        "20261101T000000Z-other.tar.gz",
        "notes.tar.gz",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in archives_of("demo", tmp_path)] == names[:4]
    removed = prune("demo", tmp_path, 2)
    assert [p.name for p in removed] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
