"""``murmur dev ...``: tools for implementers (interop harnesses), not for everyday use."""

from __future__ import annotations

import argparse

from client.cli.output import Context

__all__ = ["register"]


def cmd_negentropy_harness(args: argparse.Namespace, ctx: Context) -> int:
    from client.dev_negentropy_harness import main as harness_main

    return harness_main(args.role)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="developer tools: interop harnesses")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND", required=True)
    harness = dev_sub.add_parser(
        "negentropy-harness",
        help="speak negentropy v1 over stdin/stdout (for interop tests)",
        description="Reconcile a set of (timestamp, id) items with another negentropy "
        "implementation over a line protocol on stdin/stdout. In: 'item,<ts>,<hex id>', "
        "'seal', 'initiate' (client only), 'msg,<hex>'. Out: 'msg,<hex>', 'have,<hex id>', "
        "'need,<hex id>', 'done'. Frame size limit from $FRAMESIZELIMIT (0 = none). "
        "Spec: specs/0005-federation.md.",
    )
    harness.add_argument("--role", choices=("client", "server"), required=True)
    harness.set_defaults(handler=cmd_negentropy_harness)
