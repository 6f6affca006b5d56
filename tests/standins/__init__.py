"""Stand-in images for the official nginx, certbot, postgres, authentik and pebble images.

No registry is reachable where the tests run, so the suite builds look-alikes from Debian packages that
honour each official image's contract (entrypoint, paths, environment). See `images.py`.
"""
