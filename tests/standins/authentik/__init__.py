"""authentik stand-in: the server front end's observable behaviour, in stdlib Python.

Installed into the stand-in image as the `ak_standin` package with an `ak` launcher on PATH.
"""
