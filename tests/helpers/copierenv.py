"""copier's own Jinja environment for this template (sandbox, default filters, copier.yml's extensions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers.stack import REPO_ROOT


@contextlib.contextmanager
def copier_jinja_env(destination: Path) -> Iterator[Any]:
    """The environment copier renders this checkout with (dirty changes included)."""
    from copier._main import Worker

    with Worker(
        src_path=str(REPO_ROOT), dst_path=destination, unsafe=True, vcs_ref="HEAD", quiet=True
    ) as worker:
        yield worker.jinja_env
