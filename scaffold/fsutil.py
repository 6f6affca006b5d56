"""File writes that cannot lose the user's data: atomic replace, a run lock, private backups.

`.env` holds secrets that exist nowhere else, so a write interrupted at any moment (Ctrl-C, SIGKILL, a full
disk, a power cut) must leave either the old file or the new one, never a torn or empty one, and never a
copy that other users can read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scaffold.errors import EnvFileError

_TEMP_MARK = ".tmp-"
_LABEL = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # a plain file name; compiled on use (`re` caches it)


def temp_prefix(name: str) -> str:
    """Prefix of the temporary files `atomic_write_text` creates next to a file called `name`."""
    return f".{name}{_TEMP_MARK}"


def atomic_write_text(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace `path` with `text` (UTF-8, line endings untouched) so that readers see the old or the new file.

    The text goes to a temporary file in the same directory, is flushed to disk, gets `mode` (and, when
    running as root, the previous owner) and is renamed over `path`. A symbolic link is refused, not
    followed: a secret must never land wherever a link points. A read-only target means "do not change
    this": it is refused, not replaced.
    """
    data = text.encode("utf-8")  # before touching the disk: an unencodable text changes nothing
    refuse_symlink(path)
    target = path
    previous = _existing_file_stat(target)
    directory = target.parent
    if not directory.is_dir():
        raise EnvFileError(
            f"cannot write {path}: the directory {directory} does not exist",
            hint="check the path, or create the directory first",
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise EnvFileError(
            f"cannot write {path}: the directory {directory} is not writable for this user",
            hint="run scaffold as the user who owns the project directory",
        )
    try:
        _replace_with(target, data, mode=mode, owner=previous)
    except OSError as exc:
        raise EnvFileError(
            f"could not write {path}: {exc.strerror or exc}; the previous file is unchanged",
            hint=_hint_for(exc),
        ) from exc


@contextmanager
def exclusive_lock(lock_path: Path, *, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` so that two scaffold runs never edit the same files at once.

    Waits up to `timeout` seconds for another holder. The kernel drops the lock when its holder exits, even
    when killed, so a crashed run never leaves a stale lock. Not reentrant: do not nest on the same path.
    """
    import fcntl  # POSIX only, and only needed here

    refuse_symlink(lock_path.parent)
    refuse_symlink(lock_path, hint=f"remove the link (`rm {lock_path}`); scaffold creates the lock itself")
    try:
        _make_private_dirs(lock_path.parent)
        fd = _open_no_follow(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EnvFileError(
            f"cannot open the lock file {lock_path}: {exc.strerror or exc}",
            hint=_hint_for(exc),
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    raise EnvFileError(
                        f"another scaffold run{holder} holds the lock {lock_path} (waited {timeout:g}s)",
                        hint="wait for the other run to finish, then try again",
                    ) from None
                time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
                delay = min(delay * 2, 0.2)
        # Say who holds it, for the message another run shows; the content carries no meaning otherwise.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def timestamp_label(label: str) -> str:
    """`<UTC time>-<label>`, e.g. `20261127T204355Z-env`: backup folder names sort by age."""
    if not re.fullmatch(_LABEL, label):
        raise ValueError(f"backup label must match {_LABEL}: {label!r}")
    return f"{_utc_stamp()}-{label}"


def new_backup_dir(backup_root: Path, *, label: str) -> Path:
    """A new, empty, private (0700) folder `backup_root/<UTC time>-<label>[-N]/` for one backup.

    Refuses a `backup_root` (or its parent) that is a symbolic link: backups hold secrets.
    """
    refuse_symlink(backup_root.parent)
    refuse_symlink(backup_root)
    _make_private_dirs(backup_root)
    return _new_private_dir(backup_root, timestamp_label(label))


def backup_file(path: Path, backup_root: Path, *, label: str) -> Path:
    """Copy `path` into a new private folder `backup_root/<UTC time>-<label>/` and return that folder.

    Backups may contain secrets: folders are 0700, the copy is 0600 at most. The copy is written atomically,
    so a backup that exists is complete. Two calls in the same second get different folders.
    """
    timestamp_label(label)  # check the label before touching anything
    try:
        data, source = _read_no_follow(path)
        folder = new_backup_dir(backup_root, label=label)
        copy = folder / path.name
        _replace_with(copy, data, mode=(stat.S_IMODE(source.st_mode) & 0o600) | 0o400, owner=None)
        os.utime(copy, ns=(source.st_atime_ns, source.st_mtime_ns))
    except OSError as exc:
        raise EnvFileError(
            f"could not back up {path} to {backup_root}: {exc.strerror or exc}",
            hint=_hint_for(exc),
        ) from exc
    return folder


def refuse_symlink(path: Path, *, hint: str | None = None) -> None:
    """Raise when `path` is a symbolic link: scaffold never reads secrets from, or writes into, a link.

    A link at `.env`, the lock or a backup folder would send secrets, truncation or a mode change to
    whatever it points at (another user's file, a shared folder). Nothing is changed when this raises.
    """
    if not path.is_symlink():
        return
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    raise EnvFileError(
        f"{path} is a symbolic link (to {target}): scaffold does not follow links for the files it writes, "
        "so that a secret cannot land, and no file be truncated, wherever a link points; nothing was changed",
        hint=hint
        or (
            _folder_link_hint(path)
            if path.is_dir()
            else "replace the link with the file itself "
            f'(`cp --remove-destination "$(readlink -f {path})" {path}`), then run again'
        ),
    )


def read_bytes_no_follow(path: Path) -> bytes | None:
    """The bytes of the regular file `path`, None when it does not exist; refuses links, FIFOs, devices.

    Raises EnvFileError for a link or a special file, IsADirectoryError for a folder, OSError otherwise.
    """
    try:
        data, _ = _read_no_follow(path)
    except FileNotFoundError:
        return None
    return data


def copy_file_no_follow(source: Path, destination: Path, *, mode: int = 0o600) -> None:
    """Copy the regular file `source` to `destination` (atomically, `mode`), following no link at either end.

    For backups: a link at the source would copy another file into the backup, a link at the destination
    would write the copy wherever it points.
    """
    refuse_symlink(destination, hint=f"remove the link (`rm {destination}`) and run again")
    try:
        data, info = _read_no_follow(source)
        _replace_with(destination, data, mode=mode, owner=None)
        os.utime(destination, ns=(info.st_atime_ns, info.st_mtime_ns))
    except OSError as exc:
        raise EnvFileError(
            f"could not copy {source} to {destination}: {exc.strerror or exc}", hint=_hint_for(exc)
        ) from exc


def remove_stale_temp_files(directory: Path, name: str) -> list[Path]:
    """Delete the temporary files a killed run of `atomic_write_text` left next to `directory/name`.

    Call it while holding `exclusive_lock`: a temporary file of a run that is still writing looks the same.
    """
    prefix = temp_prefix(name)
    removed: list[Path] = []
    try:
        with os.scandir(directory) as entries:
            candidates = sorted(e.path for e in entries if e.name.startswith(prefix) and _is_plain_file(e))
        for candidate in candidates:
            try:
                os.unlink(candidate)
            except FileNotFoundError:
                continue
            removed.append(Path(candidate))
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise EnvFileError(
            f"could not clean up temporary files in {directory}: {exc.strerror or exc}",
            hint=_hint_for(exc),
        ) from exc
    return removed


# -- internals ----------------------------------------------------------------------------------------


def _folder_link_hint(path: Path) -> str:
    return (
        f"replace the link with a real folder (`rm {path} && mkdir -m 700 {path}`, then move back what you "
        "need from where it pointed) and run again"
    )


def _open_no_follow(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` that refuses a symbolic link at `path` (O_NOFOLLOW) with scaffold's message."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(path)
        raise


def _read_no_follow(path: Path) -> tuple[bytes, os.stat_result]:
    """Read a regular file without following a link or blocking on a FIFO; its bytes and stat."""
    fd = _open_no_follow(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise EnvFileError(
                f"cannot read {path}: it is not a regular file",
                hint="move whatever is at this path out of the way and run again",
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def _is_plain_file(entry: os.DirEntry[str]) -> bool:
    return entry.is_file(follow_symlinks=False)


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _existing_file_stat(path: Path) -> os.stat_result | None:
    """The stat of the file about to be replaced; refuses targets that must not be replaced."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvFileError(f"cannot inspect {path}: {exc.strerror or exc}", hint=_hint_for(exc)) from exc
    if stat.S_ISDIR(st.st_mode):
        raise EnvFileError(
            f"cannot write {path}: it is a directory",
            hint=f"move the directory out of the way (e.g. `mv {path} {path}.dir`) and run again",
        )
    if not stat.S_ISREG(st.st_mode):
        raise EnvFileError(
            f"cannot write {path}: it is not a regular file",
            hint="move whatever is at this path out of the way and run again",
        )
    # Root may write anything, so the mode bits are what say "read-only" there.
    if not os.access(path, os.W_OK) or not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise EnvFileError(
            f"{path} is read-only, so scaffold leaves it unchanged",
            hint=f"if scaffold may change it, make it writable (`chmod u+w {path}`) and run again",
        )
    return st


def _replace_with(target: Path, data: bytes, *, mode: int, owner: os.stat_result | None) -> None:
    """Write `data` to a temporary file next to `target` and rename it over `target`; no partial results."""
    temp = _create_temp(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
                os.fchmod(fd, mode)  # chown clears setuid/setgid bits; apply the mode again
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _create_temp(target: Path) -> Path:
    """Create an empty 0600 file named `.{name}.tmp-<random>` in `target`'s directory."""
    prefix = temp_prefix(target.name)
    for _ in range(100):
        temp = target.with_name(f"{prefix}{os.urandom(6).hex()}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable. Best effort: the new file is already in place."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the replace itself has succeeded
    finally:
        os.close(fd)


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents as 0700 (existing ones are left as they are)."""
    missing = []
    for candidate in [directory, *directory.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue  # created concurrently
        os.chmod(candidate, 0o700)  # mkdir's mode is filtered by the umask
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))


def _new_private_dir(parent: Path, name: str) -> Path:
    """Create `parent/name` (or `name-2`, `name-3`, ... when taken) as 0700 and return it."""
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)
        return folder
    raise FileExistsError(errno.EEXIST, "no free backup folder name", str(parent / name))


def _read_holder(fd: int) -> str:
    """` (pid N)` from the lock file, or nothing when it cannot be read."""
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _hint_for(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "run scaffold as the user who owns these files, or fix their permissions"
    if exc.errno == errno.ENOSPC:
        return "free some disk space and run again"
    if exc.errno == errno.EROFS:
        return "the filesystem is mounted read-only; remount it read-write or run scaffold elsewhere"
    return "check the path and its permissions, then run again"
