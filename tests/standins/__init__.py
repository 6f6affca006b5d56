"""Stand-in images for the official nginx, certbot, postgres, authentik and pebble images.

No registry is reachable where the tests run, so the suite builds look-alikes from Debian packages that
honour each official image's contract (entrypoint, paths, environment). See `images.py`. Two more play
parts no official image has: `client` (curl, wrk, h2load) and `echoapp`, a web app behind forward auth
that answers with the request it received.
"""
