"""``python -m node run|migrate-store ...``: the node commands without the ``murmur``
entry point."""

from __future__ import annotations

import argparse
import sys

from node.cli import add_migrate_command, add_run_command

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node", description="Murmur node")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_run_command(sub)
    add_migrate_command(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
