"""Safe writes: atomic replace under SIGKILL, a lock that serialises runs, private backups, temp clean-up."""

from __future__ import annotations

import calendar
import os
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaffold import fsutil
from scaffold.errors import EnvFileError, ScaffoldError
from scaffold.fsutil import (
    atomic_write_text,
    backup_file,
    exclusive_lock,
    remove_stale_temp_files,
    timestamp_label,
)
from tests.helpers.privileges import as_unprivileged_user

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def temp_files(directory: Path, name: str = ".env") -> list[Path]:
    return sorted(directory.glob(f".{name}.tmp-*"))


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """A child Python running `code` with this checkout importable; its stdout is a pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen[str], expected: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != expected:
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"child printed {line!r} instead of {expected!r}: {err}")


# -- atomic_write_text: never a torn file -------------------------------------------------------------------

# Two large, different contents: a torn file (a mix, a prefix, or empty) is unmistakable.
OLD = "".join(f"OLD_{i:05d}=old-value-{i}\n" for i in range(12000))
NEW = "".join(f"NEW_{i:05d}='new value {i}'\n" for i in range(9000))

ATOMIC_WRITER = """
    import sys
    from pathlib import Path
    from scaffold.fsutil import atomic_write_text
    path, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    contents = [Path(old).read_text(), Path(new).read_text()]
    i = 0
    while True:
        atomic_write_text(path, contents[i % 2])
        if i == 0:
            print("writing", flush=True)
        i += 1
"""

# The control: a plain `open(path, "w")` writer, streaming its content like most naive code does.
NAIVE_WRITER = """
    import sys
    from pathlib import Path
    path, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    contents = [Path(old).read_text(), Path(new).read_text()]
    i = 0
    while True:
        with open(path, "w") as f:
            for line in contents[i % 2].splitlines(keepends=True):
                f.write(line)
        if i == 0:
            print("writing", flush=True)
        i += 1
"""


def kill_repeatedly(code: str, workdir: Path, rounds: int, seed: int) -> tuple[list[str], int]:
    """Start `code` writing `.env` in a loop, SIGKILL it at a random moment, `rounds` times.

    Returns what `.env` held after each kill, and after how many kills temporary files were left over.
    """
    rng = random.Random(seed)
    path = workdir / ".env"
    (workdir / "old.txt").write_text(OLD)
    (workdir / "new.txt").write_text(NEW)
    path.write_text(OLD)
    seen, leftovers = [], 0
    for _ in range(rounds):
        child = start_python(code, str(path), str(workdir / "old.txt"), str(workdir / "new.txt"))
        wait_for_line(child, "writing")
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.communicate()
        seen.append(path.read_text())
        stale = temp_files(workdir)
        if stale:
            leftovers += 1
            assert remove_stale_temp_files(workdir, ".env") == stale
            assert temp_files(workdir) == []
    return seen, leftovers


def test_sigkill_at_any_moment_leaves_the_old_or_the_new_file_never_a_torn_one(tmp_path: Path) -> None:
    seen, leftovers = kill_repeatedly(ATOMIC_WRITER, tmp_path, rounds=60, seed=1)
    torn = [i for i, text in enumerate(seen) if text not in (OLD, NEW)]
    assert torn == [], f"torn after kills {torn}"
    assert NEW in seen  # the child did get writes through
    assert leftovers > 0  # and some kills did land mid-write (its temp file was left behind)
    assert mode_of(tmp_path / ".env") == 0o600
    # Nothing but the file, its two sources, and no temporary file in any other name.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "new.txt", "old.txt"]


def test_the_kill_harness_does_catch_a_non_atomic_writer(tmp_path: Path) -> None:
    seen, _ = kill_repeatedly(NAIVE_WRITER, tmp_path, rounds=15, seed=2)
    assert any(text not in (OLD, NEW) for text in seen)


# -- atomic_write_text: modes, owners, refusals --------------------------------------------------------------


def test_writes_the_exact_text_without_translating_line_endings(tmp_path: Path) -> None:
    text = "\ufeffA=1\r\nB='ü ✓'\rC=3"
    atomic_write_text(tmp_path / ".env", text)
    assert (tmp_path / ".env").read_bytes() == text.encode("utf-8")


def test_mode_is_0600_after_every_write_even_when_the_file_was_0644(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o644)
    for i in range(3):
        atomic_write_text(path, f"A={i}\n")
        assert mode_of(path) == 0o600
        assert path.read_text() == f"A={i}\n"


def test_a_new_file_gets_exactly_the_mode_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        atomic_write_text(tmp_path / "a", "x")
        atomic_write_text(tmp_path / "b", "x", mode=0o640)
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / "a") == 0o600
    assert mode_of(tmp_path / "b") == 0o640


def test_a_read_only_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n")
    path.chmod(0o444)
    inode = path.stat().st_ino
    with pytest.raises(EnvFileError, match="read-only") as caught:
        atomic_write_text(path, "CHANGED=1\n")
    assert caught.value.hint and "chmod u+w" in caught.value.hint
    assert path.read_text() == "KEEP=1\n"
    assert path.stat().st_ino == inode and mode_of(path) == 0o444
    assert temp_files(tmp_path) == []


def test_a_directory_at_the_target_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.mkdir()
    (target / "inside").write_text("user data")
    with pytest.raises(EnvFileError, match="is a directory") as caught:
        atomic_write_text(target, "A=1\n")
    assert caught.value.hint
    assert target.is_dir() and (target / "inside").read_text() == "user data"
    assert [p.name for p in target.iterdir()] == ["inside"]
    assert temp_files(tmp_path) == []


def test_a_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EnvFileError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / ".env", "A=1\n")
    assert not (tmp_path / "nope").exists()


def test_a_symlinked_target_is_refused_and_neither_the_link_nor_its_target_changes(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    victim = tmp_path / "elsewhere" / "victim"
    victim.write_text("VICTIM=1\n")
    victim.chmod(0o644)
    link = tmp_path / ".env"
    link.symlink_to(victim)
    with pytest.raises(EnvFileError, match="symbolic link") as caught:
        atomic_write_text(link, "A=2\n")
    assert caught.value.hint and "readlink" in caught.value.hint
    assert link.is_symlink() and victim.read_text() == "VICTIM=1\n" and mode_of(victim) == 0o644
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("failing", "error"),
    [("fsync", OSError(28, "No space left on device")), ("replace", OSError(5, "Input/output error"))],
)
def test_a_failure_midway_removes_the_temp_file_and_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, error: OSError
) -> None:
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(fsutil.os, failing, fail)
    with pytest.raises(EnvFileError, match="previous file is unchanged") as caught:
        atomic_write_text(path, "CHANGED=1\n")
    monkeypatch.undo()
    assert isinstance(caught.value, ScaffoldError) and caught.value.hint
    assert path.read_text() == "KEEP=1\n"
    assert temp_files(tmp_path) == []


def test_ctrl_c_midway_removes_the_temp_file_and_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n")

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "CHANGED=1\n")
    monkeypatch.undo()
    assert path.read_text() == "KEEP=1\n"
    assert temp_files(tmp_path) == []


def test_text_that_cannot_be_encoded_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "BAD=\udc80\n")
    assert path.read_text() == "KEEP=1\n"
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(
    not IS_ROOT, reason="only root can give files away; keeping the owner is a root-only duty"
)
def test_as_root_the_previous_owner_and_group_are_kept(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    os.chown(path, NOBODY, NOBODY)
    atomic_write_text(path, "A=2\n")
    assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY)
    assert mode_of(path) == 0o600


# Permission refusals as an ordinary user. Root may write anywhere, so when the suite runs as root these
# run in a forked child that has dropped to `nobody`.


def test_a_directory_we_may_not_write_is_refused(shared_dir: Path) -> None:
    path = shared_dir / ".env"
    path.write_text("KEEP=1\n")
    path.chmod(0o666)  # the file itself would be writable: only the directory stops us
    if not IS_ROOT:
        shared_dir.chmod(0o555)
    try:
        name, message = as_unprivileged_user(lambda: atomic_write_text(path, "CHANGED=1\n"))
    finally:
        shared_dir.chmod(0o755)
    assert name == "EnvFileError"
    assert "not writable" in message and "fix:" in message
    assert path.read_text() == "KEEP=1\n"
    assert temp_files(shared_dir) == []


@pytest.mark.skipif(not IS_ROOT, reason="needs a file owned by someone else, which only root can set up")
def test_another_users_file_in_a_writable_directory_is_refused_not_replaced(shared_dir: Path) -> None:
    # The directory would let us rename a new file over it; the file itself says "not yours to change".
    shared_dir.chmod(0o777)
    path = shared_dir / ".env"
    path.write_text("ROOTS=1\n")
    path.chmod(0o644)
    inode = path.stat().st_ino
    name, message = as_unprivileged_user(lambda: atomic_write_text(path, "CHANGED=1\n"))
    assert name == "EnvFileError" and "read-only" in message
    assert path.read_text() == "ROOTS=1\n" and path.stat().st_ino == inode and path.stat().st_uid == 0
    assert temp_files(shared_dir) == []


# -- exclusive_lock ----------------------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from pathlib import Path
    from scaffold.fsutil import exclusive_lock
    with exclusive_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
"""


def test_a_second_run_waits_then_gives_up_saying_another_run_holds_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "lock"
    holder = start_python(HOLDER, str(lock), "60")
    try:
        wait_for_line(holder, "locked")
        started = time.monotonic()
        with (
            pytest.raises(EnvFileError, match="another scaffold run") as caught,
            exclusive_lock(lock, timeout=0.5),
        ):
            pass
        assert time.monotonic() - started >= 0.5
        assert f"(pid {holder.pid})" in caught.value.message and caught.value.hint
    finally:
        holder.kill()
        holder.communicate()
    # The holder was killed: the kernel released its lock, so nothing stale blocks the next run.
    started = time.monotonic()
    with exclusive_lock(lock, timeout=5):
        assert time.monotonic() - started < 1


def test_a_second_run_gets_the_lock_as_soon_as_the_first_releases_it(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    holder = start_python(HOLDER, str(lock), "0.5")
    wait_for_line(holder, "locked")
    started = time.monotonic()
    with exclusive_lock(lock, timeout=10):
        waited = time.monotonic() - started
    holder.communicate()
    assert 0.1 < waited < 5


def test_the_lock_file_is_private_and_its_missing_parents_are_created(tmp_path: Path) -> None:
    lock = tmp_path / "a" / "b" / "scaffold.lock"
    with exclusive_lock(lock, timeout=1):
        assert mode_of(lock) == 0o600
    assert mode_of(tmp_path / "a") == 0o700 and mode_of(tmp_path / "a" / "b") == 0o700
    with exclusive_lock(lock, timeout=0):  # released on exit: free again at once
        pass


ADDER = """
    import os, sys, time
    from pathlib import Path
    from scaffold.fsutil import atomic_write_text, exclusive_lock
    import contextlib
    path, lock, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    name, use_lock = sys.argv[4], sys.argv[5]
    while not go.exists():
        time.sleep(0.001)
    for i in range(50):
        with exclusive_lock(lock) if use_lock == "yes" else contextlib.nullcontext():
            text = path.read_text() if path.exists() else ""
            time.sleep(0.002)  # widen the read-modify-write window
            atomic_write_text(path, text + f"{name}_{i:02d}=x\\n")
"""


def run_two_adders(workdir: Path, *, use_lock: bool) -> list[str]:
    path, lock, go = workdir / ".env", workdir / "lock", workdir / "go"
    children = [
        start_python(ADDER, str(path), str(lock), str(go), name, "yes" if use_lock else "no")
        for name in ("P1", "P2")
    ]
    time.sleep(0.3)  # let both start and wait at the barrier
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    return path.read_text().splitlines()


def test_two_locked_runs_adding_keys_concurrently_never_lose_one(tmp_path: Path) -> None:
    lines = run_two_adders(tmp_path, use_lock=True)
    expected = {f"{name}_{i:02d}=x" for name in ("P1", "P2") for i in range(50)}
    assert sorted(lines) == sorted(expected)


def test_without_the_lock_the_same_runs_do_lose_keys(tmp_path: Path) -> None:
    # The control for the test above: the race it guards against is real in this set-up.
    lines = run_two_adders(tmp_path, use_lock=False)
    assert len(lines) < 100


def test_the_lock_refuses_a_symlink_and_never_truncates_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "lock").symlink_to(victim)
    with (
        pytest.raises(EnvFileError, match="symbolic link"),
        exclusive_lock(tmp_path / "state" / "lock", timeout=0),
    ):
        pass
    assert victim.read_text() == "precious\n"


def test_the_lock_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    with (
        pytest.raises(EnvFileError, match="symbolic link"),
        exclusive_lock(tmp_path / "state" / "lock", timeout=0),
    ):
        pass
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_read_no_follow_refuses_links_and_anything_but_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"exact  \n")
    assert fsutil.read_bytes_no_follow(tmp_path / "file") == b"exact  \n"
    assert fsutil.read_bytes_no_follow(tmp_path / "missing") is None
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(EnvFileError, match="symbolic link"):
        fsutil.read_bytes_no_follow(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # opening a FIFO for reading would block forever
    with pytest.raises(EnvFileError, match="not a regular file"):
        fsutil.read_bytes_no_follow(tmp_path / "fifo")


def test_copy_no_follow_copies_privately_and_refuses_links_at_either_end(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"S=1\n")
    (tmp_path / "backup").mkdir()
    fsutil.copy_file_no_follow(source, tmp_path / "backup" / "copy", mode=0o600)
    assert (tmp_path / "backup" / "copy").read_bytes() == b"S=1\n" and mode_of(
        tmp_path / "backup" / "copy"
    ) == 0o600
    (tmp_path / "victim").write_text("keep\n")
    (tmp_path / "backup" / "planted").symlink_to(tmp_path / "victim")
    with pytest.raises(EnvFileError, match="symbolic link"):
        fsutil.copy_file_no_follow(source, tmp_path / "backup" / "planted", mode=0o600)
    (tmp_path / "linked-source").symlink_to(tmp_path / "victim")
    with pytest.raises(EnvFileError, match="symbolic link"):
        fsutil.copy_file_no_follow(tmp_path / "linked-source", tmp_path / "backup" / "other", mode=0o600)
    assert (tmp_path / "victim").read_text() == "keep\n" and not (tmp_path / "backup" / "other").exists()


# -- backup_file ---------------------------------------------------------------------------------------------


def test_backup_is_a_private_exact_copy_in_a_timestamped_folder(tmp_path: Path) -> None:
    source = tmp_path / ".env"
    source.write_bytes(b"SECRET='s'\r\n\xc3\xbc")
    source.chmod(0o644)
    os.utime(source, (1_700_000_000, 1_700_000_000))
    root = tmp_path / "state" / "backups"
    before = time.time()
    folder = backup_file(source, root, label="env")
    match = re.fullmatch(r"(\d{8}T\d{6}Z)-env", folder.name)
    assert match and folder.parent == root
    stamp = calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%SZ"))
    assert before - 2 <= stamp <= time.time() + 1  # it is UTC
    copy = folder / ".env"
    assert copy.read_bytes() == source.read_bytes()
    assert mode_of(copy) == 0o600
    assert mode_of(folder) == 0o700 and mode_of(root) == 0o700 and mode_of(tmp_path / "state") == 0o700
    assert copy.stat().st_mtime == 1_700_000_000
    assert sorted(p.name for p in folder.iterdir()) == [".env"]  # no temp file left in it


def test_a_more_private_mode_is_kept(tmp_path: Path) -> None:
    source = tmp_path / ".env"
    source.write_text("A=1\n")
    source.chmod(0o400)
    folder = backup_file(source, tmp_path / "backups", label="env")
    assert mode_of(folder / ".env") == 0o400


def test_two_backups_in_the_same_second_get_different_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsutil, "_utc_stamp", lambda: "20261127T204355Z")
    source = tmp_path / ".env"
    source.write_text("A=1\n")
    first = backup_file(source, tmp_path / "backups", label="env")
    source.write_text("A=2\n")
    second = backup_file(source, tmp_path / "backups", label="env")
    assert first != second
    assert (first.name, second.name) == ("20261127T204355Z-env", "20261127T204355Z-env-2")
    assert (first / ".env").read_text() == "A=1\n" and (second / ".env").read_text() == "A=2\n"


@pytest.mark.parametrize("linked", ["source", "backup folder", "its parent"])
def test_backup_refuses_symlinks_and_writes_nothing_through_them(tmp_path: Path, linked: str) -> None:
    (tmp_path / "elsewhere").mkdir()
    victim = tmp_path / "elsewhere" / "victim"
    victim.write_text("V=1\n")
    source = tmp_path / ".env"
    source.write_text("A=1\n")
    root = tmp_path / "state" / "backups"
    if linked == "source":
        source.unlink()
        source.symlink_to(victim)
    elif linked == "backup folder":
        root.parent.mkdir()
        root.symlink_to(tmp_path / "elsewhere")
    else:
        (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EnvFileError, match="symbolic link"):
        backup_file(source, root, label="env")
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["victim"]


def test_backing_up_a_missing_file_fails_cleanly_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(EnvFileError, match="could not back up"):
        backup_file(tmp_path / ".env", tmp_path / "backups", label="env")
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("label", ["", "../escape", "a/b", ".hidden", "with space"])
def test_a_label_that_is_not_a_plain_name_is_rejected(tmp_path: Path, label: str) -> None:
    (tmp_path / ".env").write_text("A=1\n")
    with pytest.raises(ValueError, match="label"):
        backup_file(tmp_path / ".env", tmp_path / "backups", label=label)
    assert not (tmp_path / "backups").exists()


def test_timestamp_label_is_utc_time_then_label() -> None:
    assert re.fullmatch(r"\d{8}T\d{6}Z-update", timestamp_label("update"))


# -- remove_stale_temp_files -------------------------------------------------------------------------------


def test_only_temp_files_of_that_name_are_removed(tmp_path: Path) -> None:
    # `.{name}.tmp-*`: for `.env` that is `..env.tmp-*`, the names atomic_write_text gives its temp files.
    stale = ["..env.tmp-abc", "..env.tmp-def"]
    kept = [".env", ".env.tmp-abc", "..env.tmp", "..other.tmp-1", ".env.bak", "..env.tmpx"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / "..env.tmp-dir").mkdir()
    (tmp_path / "..env.tmp-link").symlink_to(tmp_path / ".env")
    removed = remove_stale_temp_files(tmp_path, ".env")
    assert removed == [tmp_path / name for name in stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "..env.tmp-dir", "..env.tmp-link"])


def test_a_normal_write_leaves_no_temp_file_to_clean(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "state.json", "{}")
    backup_file(tmp_path / "state.json", tmp_path / "backups", label="state")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "state.json"]
    assert remove_stale_temp_files(tmp_path, "state.json") == []


def test_a_missing_directory_has_nothing_to_clean(tmp_path: Path) -> None:
    assert remove_stale_temp_files(tmp_path / "missing", ".env") == []


def test_module_imports_nothing_heavy() -> None:
    code = "import sys; b = set(sys.modules); import scaffold.fsutil; print(*sorted(set(sys.modules) - b))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert "scaffold.fsutil" in loaded
    assert not loaded & {"tempfile", "shutil", "fcntl", "secrets", "datetime", "dotenv", "docker", "copier"}
