"""Placeholder: the CLI is being built (issue 4)."""


def main(argv: list[str] | None = None) -> int:
    return 0
