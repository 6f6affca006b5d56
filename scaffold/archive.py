"""The backup archive: one gzip'ed tar holding a database dump, the project's files and a manifest.

Layout, in this order:

  database.pgdump   `pg_dump --format=custom` of authentik's database
  project/...       every file of the project folder (`.env`, answers, compose file, nginx/,
                    data/, certs/, custom-templates/, letsencrypt/, .git/ ...), owners and modes kept
  manifest.json     what made the archive, and the size and SHA-256 of every member above

The manifest comes last because the checksums are known only once everything is written; a
restore reads the whole archive and checks every member against it before it changes anything.
An archive is written under a temporary name (0600 from creation, opened with O_EXCL) and renamed
when complete, so an archive that has its final name is whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from scaffold.errors import ScaffoldError
from scaffold.fsutil import timestamp_label

FORMAT = "authentik-scaffold-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "database.pgdump"
PROJECT = "project"
SUFFIX = ".tar.gz"
#: gzip level 1: the dump is compressed already and media files mostly are; 6 costs 3x the time.
COMPRESSLEVEL = 1
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20


class ArchiveError(ScaffoldError):
    """An archive cannot be written, or is not whole, or does not fit where it would be restored."""


@dataclass(frozen=True)
class Member:
    """One archive member as the manifest records it."""

    name: str
    kind: str  # "file", "dir" or "symlink"
    size: int = 0
    sha256: str = ""
    target: str = ""  # of a symlink

    def describe_difference(self, other: Member) -> str | None:
        if self.kind != other.kind:
            return f"is a {other.kind}, the manifest says {self.kind}"
        if self.size != other.size:
            return f"has {other.size} bytes, the manifest says {self.size}"
        if self.sha256 != other.sha256:
            return "has a different SHA-256 than the manifest records"
        if self.target != other.target:
            return f"points to {other.target!r}, the manifest says {self.target!r}"
        return None


@dataclass(frozen=True)
class PostgresInfo:
    version: str  # e.g. "17.6"
    major: int
    encoding: str


@dataclass(frozen=True)
class Manifest:
    created: str
    project: str
    template_commit: str | None
    authentik_tag: str | None
    postgresql: PostgresInfo
    members: tuple[Member, ...]

    @property
    def total_bytes(self) -> int:
        return sum(member.size for member in self.members)

    def to_json(self) -> str:
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}
        data["total_bytes"] = self.total_bytes
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: bytes) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('format_version')!r} (this scaffold reads 1)")
            pg = data["postgresql"]
            return cls(
                created=str(data["created"]),
                project=str(data["project"]),
                template_commit=data.get("template_commit"),
                authentik_tag=data.get("authentik_tag"),
                postgresql=PostgresInfo(str(pg["version"]), int(pg["major"]), str(pg["encoding"])),
                members=tuple(
                    Member(
                        name=str(m["name"]),
                        kind=str(m["kind"]),
                        size=int(m.get("size", 0)),
                        sha256=str(m.get("sha256", "")),
                        target=str(m.get("target", "")),
                    )
                    for m in data["members"]
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(
                f"the archive's manifest is not one scaffold can read ({exc})",
                hint="use an archive made by `scaffold backup`",
            ) from None


# --------------------------------------------------------------------------- writing


class _HashingReader:
    """A file object that hashes what tarfile copies out of it, and notices a file that shrank."""

    def __init__(self, raw: IO[bytes], progress: Callable[[int], None] | None = None) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        if self.progress:
            self.progress(len(data))
        return data


class ArchiveWriter:
    """Writes one archive under a temporary name; `commit` renames it into place, `abort` removes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.members: list[Member] = []
        self.temp, fd = _create_exclusive(target)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.open(  # noqa: SIM115 - closed in commit/abort
            fileobj=self._file, mode="w:gz", compresslevel=COMPRESSLEVEL, format=tarfile.PAX_FORMAT
        )

    def add_stream(
        self, name: str, source: IO[bytes], size: int, progress: Callable[[int], None] | None = None
    ) -> None:
        """A file member whose content is read from `source` (exactly `size` bytes)."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
        reader = _HashingReader(source, progress)
        self._tar.addfile(info, reader)  # type: ignore[arg-type]
        self.members.append(Member(name, "file", size, reader.hash.hexdigest()))

    def add_path(self, name: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """A file, folder or symlink of the project, with its owner, mode and time."""
        info = self._tar.gettarinfo(str(path), arcname=name)
        if info.issym():
            self._tar.addfile(info)
            self.members.append(Member(name, "symlink", target=info.linkname))
        elif info.isdir():
            self._tar.addfile(info)
            self.members.append(Member(name, "dir"))
        elif info.isreg():
            with open(path, "rb") as handle:
                reader = _HashingReader(handle, progress)
                try:
                    self._tar.addfile(info, reader)  # type: ignore[arg-type]
                except OSError as exc:  # tarfile: "unexpected end of data" when the file shrank
                    raise ArchiveError(
                        f"{path} changed while it was being read ({exc})",
                        hint="run the backup again; a file being rewritten at that moment is read again",
                    ) from None
            self.members.append(Member(name, "file", info.size, reader.hash.hexdigest()))
        # sockets, fifos and devices have no place in a backup: left out

    def commit(self, manifest: Manifest) -> Path:
        data = manifest.to_json().encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o600
        info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temp, self.target)
        return self.target

    def abort(self) -> None:
        for closing in (self._tar.close, self._file.close):
            with contextlib.suppress(Exception):  # the archive is being thrown away anyway
                closing()
        self.temp.unlink(missing_ok=True)


def _create_exclusive(target: Path) -> tuple[Path, int]:
    """A new 0600 file `.<name>.partial-<random>` next to `target` (O_EXCL), and its open descriptor."""
    for _ in range(100):
        temp = target.with_name(f".{target.name}.partial-{os.urandom(6).hex()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ArchiveError(
                f"cannot create an archive in {target.parent}: {exc.strerror or exc}",
                hint="choose a folder you can write to with --output",
            ) from None
        return temp, fd
    raise ArchiveError(f"no free temporary name next to {target}")


def archive_name(project: str, directory: Path) -> Path:
    """`<UTC time>-<project>.tar.gz` in `directory`, with `-2`, `-3` ... if taken."""
    base = timestamp_label(project)
    for attempt in range(1, 1000):
        candidate = directory / (f"{base}{SUFFIX}" if attempt == 1 else f"{base}-{attempt}{SUFFIX}")
        if not candidate.exists():
            return candidate
    raise ArchiveError(f"no free archive name in {directory}")


def archives_of(project: str, directory: Path) -> list[Path]:
    """The archives `scaffold backup` made for `project` in `directory`, oldest first."""
    pattern = re.compile(rf"(\d{{8}}T\d{{6}}Z)-{re.escape(project)}(?:-(\d+))?{re.escape(SUFFIX)}")
    found = []
    for path in directory.glob(f"*{SUFFIX}"):
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            found.append(((match.group(1), int(match.group(2) or 1)), path))
    return [path for _, path in sorted(found)]


def prune(project: str, directory: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest archives of `project`; returns what was deleted."""
    archives = archives_of(project, directory)
    doomed = archives[: max(0, len(archives) - keep)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def project_paths(root: Path, *, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every folder, file and symlink of the project, parents first.

    Left out: `.scaffold/` (lock, update backups, archives) except its `state.json`, and `exclude`.
    """
    skipped = {path.resolve() for path in exclude}
    state_dir = root / ".scaffold"
    for current, dirs, files in os.walk(root):
        here = Path(current)
        dirs.sort()
        kept_dirs = []
        for name in dirs:
            path = here / name
            if path == state_dir or path.resolve() in skipped:
                continue
            if path.is_symlink():
                files.append(name)  # a symlink to a folder is stored as a link, not followed
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in [*kept_dirs, *sorted(files)]:
            path = here / name
            if path.resolve() in skipped and not path.is_symlink():
                continue
            yield f"{PROJECT}/{path.relative_to(root).as_posix()}", path
    state = state_dir / "state.json"
    if state.is_file() and not state.is_symlink():
        yield f"{PROJECT}/.scaffold", state_dir
        yield f"{PROJECT}/.scaffold/state.json", state


# --------------------------------------------------------------------------- reading


def _damaged(path: Path, detail: str) -> ArchiveError:
    return ArchiveError(
        f"{path} is truncated or damaged ({detail}); nothing was changed",
        hint="use another copy of the archive (or a newer one), or make a new one with `scaffold backup`",
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive opened as a stream; every way a damaged file fails becomes ArchiveError."""
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno is not None:
            raise ArchiveError(
                f"cannot read {path}: {exc.strerror or exc}", hint="check the path and its permissions"
            ) from None
        raise _damaged(path, str(exc) or type(exc).__name__) from None


def _hash_member(tar: tarfile.TarFile, info: tarfile.TarInfo, sink: BinaryIO | None = None) -> str:
    source = tar.extractfile(info)
    assert source is not None
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


def _observed(tar: tarfile.TarFile, info: tarfile.TarInfo, sink: BinaryIO | None = None) -> Member:
    if info.isreg():
        return Member(info.name, "file", info.size, _hash_member(tar, info, sink))
    if info.isdir():
        return Member(info.name, "dir")
    if info.issym():
        return Member(info.name, "symlink", target=info.linkname)
    return Member(info.name, f"special file ({info.type!r})")


def verify(path: Path) -> Manifest:
    """Read the whole archive and check every member against the manifest; the manifest if all match."""
    if not path.is_file():
        raise ArchiveError(
            f"{path} is not a file", hint="give the path of an archive made by `scaffold backup`"
        )
    observed: dict[str, Member] = {}
    manifest_bytes: bytes | None = None
    with _reading(path) as tar:
        for info in tar:
            if manifest_bytes is not None:
                raise _damaged(path, f"a member {info.name!r} follows the manifest")
            if info.name == MANIFEST:
                if not info.isreg() or info.size > MAX_MANIFEST_BYTES:
                    raise _damaged(path, "the manifest is not a plain file of reasonable size")
                source = tar.extractfile(info)
                assert source is not None
                manifest_bytes = source.read()
                continue
            if info.name in observed:
                raise _damaged(path, f"{info.name!r} appears twice")
            observed[info.name] = _observed(tar, info)
    if manifest_bytes is None:
        raise _damaged(path, "it ends before its manifest")
    manifest = Manifest.from_json(manifest_bytes)
    problems = _compare(manifest, observed)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ArchiveError(
            f"{path} does not match its manifest: {shown}; nothing was changed",
            hint="the archive was altered or damaged after it was made: use another copy, or a newer archive",
        )
    return manifest


def _compare(manifest: Manifest, observed: dict[str, Member]) -> list[str]:
    expected = {member.name: member for member in manifest.members}
    problems = []
    if DATABASE not in expected:
        problems.append(f"the manifest lists no {DATABASE}")
    for name, member in expected.items():
        if not (name == DATABASE or name.startswith(f"{PROJECT}/")) or ".." in name.split("/"):
            problems.append(f"{name!r} is not a name scaffold writes")
        seen = observed.get(name)
        if seen is None:
            problems.append(f"{name} is missing")
            continue
        difference = member.describe_difference(seen)
        if difference:
            problems.append(f"{name} {difference}")
    problems.extend(f"{name} is not in the manifest" for name in sorted(set(observed) - set(expected)))
    return problems


def extract(path: Path, destination: Path, dump: BinaryIO, manifest: Manifest) -> None:
    """Write the project's files under `destination` and the dump into `dump`, checking both again.

    Owners are kept when running as root; modes too, but never setuid/setgid or group/other write.
    Links that would point outside `destination` are refused.
    """
    expected = {member.name: member for member in manifest.members}
    with _reading(path) as tar:
        for info in tar:
            if info.name == MANIFEST:
                continue
            if info.name == DATABASE:
                seen = _observed(tar, info, dump)
                if expected[DATABASE].describe_difference(seen):
                    raise _damaged(path, f"{DATABASE} changed since it was checked")
                continue
            _extract_project_member(tar, info, destination)


def _extract_project_member(tar: tarfile.TarFile, info: tarfile.TarInfo, destination: Path) -> None:
    relative = info.name.removeprefix(f"{PROJECT}/")
    if relative == PROJECT or relative == info.name:
        return  # the project folder itself

    def placed(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        member = tarfile.tar_filter(member.replace(name=relative, deep=False), dest)
        dest = os.path.realpath(dest)
        if member.issym() or member.islnk():
            base = os.path.dirname(relative) if member.issym() else ""
            resolved = os.path.realpath(os.path.join(dest, base, member.linkname))
            if os.path.isabs(member.linkname) or os.path.commonpath([resolved, dest]) != dest:
                raise tarfile.LinkOutsideDestinationError(member, resolved)
        return member

    try:
        tar.extract(info, destination, numeric_owner=True, filter=placed)
    except tarfile.FilterError as exc:
        raise ArchiveError(
            f"refusing to restore {info.name}: {exc}",
            hint="this archive was not made by `scaffold backup`; do not restore it",
        ) from None


def describe_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def describe_age(age: dt.timedelta) -> str:
    hours = age.total_seconds() / 3600
    if hours < 1:
        return f"{max(0, int(age.total_seconds() // 60))} min"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
