"""The lock that lets test workers share the Docker daemon: shared holders overlap, an exclusive
holder waits for them and is alone, and a waiting exclusive holder goes before later shared ones."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.helpers.daemonlock import daemon_access


class Holder(threading.Thread):
    """Takes the lock in a thread (its own open file, as another worker would), records when it got
    it, and keeps it until released."""

    def __init__(self, tmp_path: Path, exclusive: bool, log: list[str], name: str) -> None:
        super().__init__(daemon=True)
        self.paths = (tmp_path / "lock", tmp_path / "turnstile")
        self.exclusive, self.log, self.label = exclusive, log, name
        self.acquired, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        with daemon_access(self.exclusive, *self.paths):
            self.log.append(self.label)
            self.acquired.set()
            self.release.wait(30)


def settle() -> None:
    time.sleep(0.3)  # long enough for a thread that could take the lock to take it


def test_shared_holders_overlap(tmp_path: Path) -> None:
    log: list[str] = []
    first, second = Holder(tmp_path, False, log, "a"), Holder(tmp_path, False, log, "b")
    first.start()
    second.start()
    assert first.acquired.wait(5) and second.acquired.wait(5), log
    first.release.set()
    second.release.set()


def test_exclusive_waits_for_shared_and_goes_before_later_shared(tmp_path: Path) -> None:
    log: list[str] = []
    shared = Holder(tmp_path, False, log, "shared")
    shared.start()
    assert shared.acquired.wait(5)
    exclusive = Holder(tmp_path, True, log, "exclusive")
    exclusive.start()
    settle()
    assert not exclusive.acquired.is_set(), "the exclusive holder ran beside a shared one"
    later = Holder(tmp_path, False, log, "later")
    later.start()
    settle()
    assert not later.acquired.is_set(), "a later shared holder overtook the waiting exclusive one"
    shared.release.set()
    assert exclusive.acquired.wait(5), log
    settle()
    assert not later.acquired.is_set(), "a shared holder ran beside the exclusive one"
    exclusive.release.set()
    assert later.acquired.wait(5), log
    later.release.set()
    assert log == ["shared", "exclusive", "later"]
