"""The `scaffold` command line: a thin layer over the package's functions.

Each subcommand maps its flags onto one function call in its own module, imported only when
that subcommand runs, so `scaffold --help` stays fast. The subcommands and their flags are one
table, COMMANDS, that one loop turns into argparse parsers: a new command is a new entry.

Errors from the package's error tree become a message, a fix, and an exit code (errors.EXIT_CODES,
listed in every --help and in README.md). Anything else is a bug: it is reported in one line, with
the traceback only when SCAFFOLD_DEBUG is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from scaffold import __version__, output
from scaffold.errors import EXIT_CODES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ScaffoldError

EPILOG = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


def _cmd_detect(args: argparse.Namespace) -> int:
    from scaffold.detect import run_detect_command

    return run_detect_command(args.dest.resolve(), dry_run=args.dry_run)


def _cmd_new(args: argparse.Namespace) -> int:
    from scaffold.newproject import create_project

    create_project(
        args.dest,
        data=dict(args.data),
        defaults=args.defaults,
        template=args.template,
        vcs_ref=args.vcs_ref,
    )
    return EXIT_OK


def _cmd_update(args: argparse.Namespace) -> int:
    from scaffold.update import UpdateOptions, run_update_command

    return run_update_command(
        UpdateOptions(
            project_dir=args.dest.resolve(),
            to_ref=args.to,
            authentik=args.authentik,
            conflict=args.conflict,
            dry_run=args.dry_run,
            yes=args.yes,
            apply=args.apply,
            data=dict(args.data),
        )
    )


def _cmd_doctor(args: argparse.Namespace) -> int:
    from scaffold.doctor import run_doctor_command

    return run_doctor_command(args.dest.resolve(), as_json=args.json, offline=args.offline)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from scaffold.swarm import run_deploy

    return run_deploy(args.dest.resolve(), extra_files=args.file, resolve_image=args.resolve_image)


def _cmd_backup(args: argparse.Namespace) -> int:
    from scaffold.backup import BackupOptions, run_backup

    run_backup(BackupOptions(project_dir=args.dest.resolve(), output=args.output, keep=args.keep))
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    from scaffold.restore import RestoreOptions, run_restore

    run_restore(RestoreOptions(archive=args.archive, dest=args.dest, yes=args.yes))
    return EXIT_OK


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from scaffold.dbupgrade import UpgradeOptions, run_db_upgrade

    run_db_upgrade(UpgradeOptions(project_dir=args.dest.resolve(), to_major=args.to, image=args.image))
    return EXIT_OK


def _cmd_app_add(args: argparse.Namespace) -> int:
    from scaffold.answer_rules import App
    from scaffold.appcommands import add_app

    spec = App(
        name=args.name,
        host=args.host,
        upstream=args.upstream,
        websockets=args.websockets,
        bypass=tuple(args.bypass),
        identity_headers=args.identity_headers,
        group=args.group or "",
    )
    return add_app(args.dest.resolve(), spec)


def _cmd_app_remove(args: argparse.Namespace) -> int:
    from scaffold.appcommands import remove_app

    return remove_app(args.dest.resolve(), args.name)


def _cmd_app_list(args: argparse.Namespace) -> int:
    from scaffold.appcommands import list_apps

    return list_apps(args.dest.resolve())


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE (e.g. --data domain=sso.example.com)")
    return key, value


class Arg:
    """One `add_argument` call kept as data: the flags and keyword arguments argparse takes."""

    __slots__ = ("flags", "options")

    def __init__(self, *flags: str, **options: object) -> None:
        self.flags = flags
        self.options = options

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """A list default is copied: no two parsers share one that a handler could change."""
        options = {
            key: list(value) if isinstance(value, list) else value for key, value in self.options.items()
        }
        parser.add_argument(*self.flags, **options)  # type: ignore[arg-type]


class Command:
    """A subcommand kept as data. A leaf runs `handler`; a group (`subcommands`) only holds others.

    `description` is written indented in the table: each line's indentation is dropped, the line
    breaks are kept. Plain classes rather than dataclasses: `dataclasses` costs start-up ~10 ms.
    """

    __slots__ = ("arguments", "description", "handler", "help", "name", "subcommands")

    def __init__(
        self,
        name: str,
        handler: Callable[[argparse.Namespace], int] | None,
        help: str,
        description: str,
        arguments: tuple[Arg, ...] = (),
        subcommands: tuple[Command, ...] = (),
    ) -> None:
        self.name, self.handler, self.help = name, handler, help
        self.description = "\n".join(line.strip() for line in description.strip().splitlines())
        self.arguments, self.subcommands = arguments, subcommands


STACK = Arg("dest", type=Path, nargs="?", default=Path("."), metavar="DEST", help="the stack (default: .)")
"""The optional DEST of the commands that work on an existing stack."""


def _data(help_text: str) -> Arg:
    """`--data/-d KEY=VALUE`, repeatable: answers given on the command line."""
    return Arg(
        "--data", "-d", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help=help_text
    )


def _dry_run(effect: str) -> Arg:
    return Arg("--dry-run", action="store_true", help=f"show what would change; {effect}")


APP_COMMANDS = (
    Command(
        "add",
        _cmd_app_add,
        "protect an app on its own host name",
        """
        Add an app: nginx serves HOST with its own certificate and checks every request with
        authentik's embedded outpost; a blueprint creates the provider and application in authentik.
        Runs as `scaffold update` (backup, lock, merge) to the project's own template version, then
        commits. On a running stack it takes effect within seconds, without restarting nginx.
        """,
        (
            Arg("name", metavar="NAME", help="the app's name (file names, authentik slug), e.g. jellyfin"),
            STACK,
            Arg("--host", required=True, help="the app's own host name, e.g. jellyfin.example.com"),
            Arg(
                "--upstream",
                required=True,
                help="where nginx reaches the app: http(s)://HOST:PORT, e.g. http://jellyfin:8096",
            ),
            Arg(
                "--no-websockets",
                dest="websockets",
                action="store_false",
                help="do not pass WebSocket upgrades",
            ),
            Arg(
                "--bypass",
                action="append",
                default=[],
                metavar="PATH",
                help="a path that skips the login, e.g. /api/ for an app with its own tokens (repeatable)",
            ),
            Arg(
                "--no-identity-headers",
                dest="identity_headers",
                action="store_false",
                help="do not pass X-authentik-username/-groups/-email/-name/-uid to the app",
            ),
            Arg("--group", metavar="G", help="only members of this authentik group may use the app"),
        ),
    ),
    Command(
        "remove",
        _cmd_app_remove,
        "stop serving an app",
        """
        Remove an app: nginx stops serving its host and certbot stops renewing its certificate.
        authentik keeps its provider and application (delete them in the admin UI if you want).
        """,
        (Arg("name", metavar="NAME"), STACK),
    ),
    Command("list", _cmd_app_list, "list the apps", "List the protected apps.", (STACK,)),
)
"""`scaffold app add/remove/list`: the user's other apps behind authentik's login."""

DB_COMMANDS = (
    Command(
        "upgrade",
        _cmd_db_upgrade,
        "move the database to a newer PostgreSQL major",
        """
        Stop server and worker, dump with the running server's pg_dump, switch the postgresql service
        to the new image and a NEW volume (database-pgMAJOR, at /var/lib/postgresql from 18), restore,
        check the row count of every table and the UTF8 encoding, start everything again. The old
        volume is kept; the command to remove it is printed. Nothing to do when already there.
        """,
        (
            Arg("--to", type=int, required=True, metavar="MAJOR", help="PostgreSQL major, e.g. 17"),
            Arg("--image", help="image to use (default: postgres:MAJOR-alpine)"),
            STACK,
        ),
    ),
)

COMMANDS = (
    Command(
        "new",
        _cmd_new,
        "generate a new stack in DEST",
        """
        Generate a new stack with `copier copy`, then make DEST a git repository with a first commit
        (without .env) so that later updates can merge template changes into your edits.
        """,
        (
            Arg("dest", type=Path, metavar="DEST", help="folder to create (must not exist or be empty)"),
            _data("answer a template question (repeatable), e.g. --data domain=sso.example.com"),
            Arg(
                "--defaults",
                action="store_true",
                help="use the default for every question not given by --data",
            ),
            Arg("--template", help="template source: git URL or path (default: this checkout)"),
            Arg(
                "--vcs-ref",
                help="template version (git tag or ref) to generate from (default: the newest tag)",
            ),
        ),
    ),
    Command(
        "update",
        _cmd_update,
        "upgrade a stack to a newer template or authentik release",
        """
        Upgrade a generated stack, keeping every secret, certificate and edit. Checks the project
        first, backs up .env, the answers and your config under .scaffold/backups/, runs
        `copier update`, then brings .env up to date. Prints the commands that apply the change.
        """,
        (
            STACK,
            Arg("--to", metavar="REF", help="template version (git tag or ref); default: the newest tag"),
            Arg("--authentik", metavar="VERSION", help="move to this authentik release, e.g. 2026.11.0"),
            Arg(
                "--conflict",
                choices=["inline", "rej"],
                default="inline",
                help="how to leave changes that cannot be merged: conflict markers in the file,"
                " or .rej files",
            ),
            _dry_run("change nothing"),
            Arg("--yes", "-y", action="store_true", help="accept skipping authentik release lines"),
            Arg("--apply", action="store_true", help="also run `docker compose pull && up -d`"),
            _data("change an answer (repeatable)"),
        ),
    ),
    Command(
        "detect",
        _cmd_detect,
        "recompute the proxy network and bring .env up to date",
        """
        Create .env if missing, add missing keys (secrets are generated, never changed), and set
        PROXY_SUBNET and AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS from Docker's view of the proxy
        network. Values you pinned with `# pinned` are kept and checked.
        """,
        (STACK, _dry_run("write nothing")),
    ),
    Command(
        "doctor",
        _cmd_doctor,
        "check a deployment and say how to fix what is wrong",
        """
        Check files, proxy trust, versions, DNS, ports, certificates and the running stack.
        One line per check: ok / warn / fail, what was found, how to fix it.
        Exit codes: 0 nothing failed, 1 something failed, 2 could not run.
        """,
        (
            STACK,
            Arg("--json", action="store_true", help="machine-readable output (see docs/doctor.md)"),
            Arg("--offline", action="store_true", help="skip DNS, port and certificate checks"),
        ),
    ),
    Command(
        "deploy",
        _cmd_deploy,
        "deploy a `target: swarm` stack to Docker Swarm",
        """
        Bring .env up to date (as `scaffold detect`), create the Swarm secrets from it (never shown;
        a changed value becomes a new secret), and run `docker stack deploy --prune` of compose.yaml
        with .env's other values exported, as the stack named after the project. Run it on a manager.
        """,
        (
            STACK,
            Arg(
                "--file",
                "-f",
                type=Path,
                action="append",
                default=[],
                metavar="FILE",
                help="another stack file merged over compose.yaml (repeatable), as `docker stack deploy -c`",
            ),
            Arg(
                "--resolve-image",
                choices=["always", "changed", "never"],
                default="always",
                help="ask the registry for image digests, as `docker stack deploy --resolve-image`"
                " (default: always)",
            ),
        ),
    ),
    Command(
        "backup",
        _cmd_backup,
        "write one archive of the database, .env, answers, data and certificates",
        """
        Dump the database through the running PostgreSQL container (pg_dump, custom format) while the
        stack keeps serving, and archive it with every file of the project (.env, answers, nginx/custom/,
        data/, certs/, custom-templates/, letsencrypt/) and a manifest of SHA-256 sums. The archive is
        private (0600) and appears under its name only when complete.
        Default: .scaffold/archives/<UTC time>-<project>.tar.gz in the project.
        """,
        (
            STACK,
            Arg(
                "--output",
                "-o",
                type=Path,
                metavar="FILE",
                help="archive file to write, or a folder to write it in",
            ),
            Arg(
                "--keep",
                type=int,
                metavar="N",
                help="then delete all but the N newest archives of the project there",
            ),
        ),
    ),
    Command(
        "restore",
        _cmd_restore,
        "bring a deployment back from an archive of `scaffold backup`",
        """
        Check the whole archive (manifest, SHA-256 of every member, PostgreSQL major) before anything
        changes. DEST is the deployment itself (its database and files are replaced; server and worker
        stop meanwhile) or an empty or new folder (project, .env and data come back, the stack starts).
        """,
        (
            Arg("archive", type=Path, metavar="ARCHIVE", help="the archive (.tar.gz)"),
            STACK,
            Arg(
                "--yes",
                "-y",
                action="store_true",
                help="replace a database that holds data (back it up first)",
            ),
        ),
    ),
    Command(
        "app",
        None,
        "put other apps behind authentik's login (forward auth)",
        "Manage the apps nginx protects with authentik's login (the `apps` answer).",
        subcommands=APP_COMMANDS,
    ),
    Command("db", None, "manage the stack's PostgreSQL", "Manage PostgreSQL.", subcommands=DB_COMMANDS),
)
"""Every subcommand, in `scaffold --help` order: adding a command is adding an entry here."""


def _add_commands(subparsers: argparse._SubParsersAction, commands: tuple[Command, ...]) -> None:
    """The one loop that turns the table into argparse sub-parsers. A leaf's description and epilog
    keep their line breaks; a group's are wrapped."""
    raw = argparse.RawDescriptionHelpFormatter
    for command in commands:
        parser = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=EPILOG,
            formatter_class=argparse.HelpFormatter if command.subcommands else raw,
        )
        for argument in command.arguments:
            argument.add_to(parser)
        if command.subcommands:
            _add_commands(
                parser.add_subparsers(title="commands", metavar="COMMAND", required=True), command.subcommands
            )
        else:
            parser.set_defaults(handler=command.handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaffold",
        description="Generate, upgrade and check an authentik + nginx + certbot Docker Compose stack.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"scaffold {__version__}")
    _add_commands(parser.add_subparsers(title="commands", metavar="COMMAND", required=True), COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hook"]:  # the copier task's entry point; not a user command
        from scaffold.hook import main as hook_main

        return hook_main()
    if argv[:1] == ["render-apps"] and len(argv) == 2:  # run by `scaffold update` from the template
        from scaffold.appfiles import main as render_apps

        return render_apps(Path(argv[1]))
    if argv[:1] == ["migrate"] and len(argv) == 2:  # called by the template's _migrations
        from scaffold.migrations import run_migration

        try:
            return run_migration(argv[1])
        except KeyboardInterrupt:  # Ctrl-C reaches copier's migration too: scaffold update puts it back
            output.error(f"migration {argv[1]} interrupted")
            return EXIT_INTERRUPTED
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ScaffoldError as exc:
        output.error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not the user's doing: one line, the traceback on request
        if os.environ.get("SCAFFOLD_DEBUG"):
            raise
        output.error(
            f"unexpected error: {type(exc).__name__}: {exc}",
            "this is a bug in scaffold; run again with SCAFFOLD_DEBUG=1 for the details and report them",
        )
        return EXIT_FAILED
