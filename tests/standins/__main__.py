"""`python -m tests.standins` (from the repository root): build the stand-in images and print timings/sizes.

Used to measure cold and warm builds outside pytest.
"""

from __future__ import annotations

import logging
import time

import docker

from .images import build_missing, ensure_standin_images
from .roles import ROLES

ROLE_NAMES = tuple(role.name for role in ROLES)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    client = docker.from_env(timeout=600)
    started = time.monotonic()
    for entry in build_missing(client):
        print(f"{entry['role']:<10} install {entry['install_s']:6.1f} s  import {entry['import_s']:6.1f} s")
    print(f"build_missing: {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    images = ensure_standin_images(client)
    print(f"ensure_standin_images (warm): {(time.monotonic() - started) * 1000:.0f} ms")
    for role in ROLE_NAMES:
        ref = getattr(images, role)
        size = client.images.get(ref).attrs["Size"] / 1e6
        print(f"{ref:<40} {size:7.1f} MB")


if __name__ == "__main__":
    main()
