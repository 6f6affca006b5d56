"""Read a copier YAML file (copier.yml, the answers file) the way copier itself reads it.

copier parses both with PyYAML (YAML 1.1), so scaffold does too: the same values for the same
text, an import `scaffold new` shares with copier in its process, and libyaml's C parser where
PyYAML was built with it (about 15 times faster on copier.yml than a pure-Python parser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml import YAMLError

__all__ = ["YAMLError", "read_yaml"]

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The data of a YAML file, safe tags only; OSError, UnicodeDecodeError or YAMLError if unreadable."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
