"""Generate and upgrade an authentik + nginx + certbot Docker Compose stack.

The package is both the `scaffold` CLI and the code the copier template's tasks run, so it
must import nothing heavy at module level: the CLI starts on every call and tasks run three
times per `copier update`.
"""

__version__ = "1.3.0"
