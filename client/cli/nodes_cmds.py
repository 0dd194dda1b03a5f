"""``murmur nodes add|remove|list``: the set of nodes the client posts to and reads from."""

from __future__ import annotations

import argparse

from client.cli.output import Context, Result
from client.config import ClientConfig

__all__ = ["register"]


def cmd_add(args: argparse.Namespace, ctx: Context) -> Result:
    config = ClientConfig.load(ctx.home)
    url, added = config.add_node(args.url)
    if added:
        config.save()
    text = f"Added {url}" if added else f"{url} is already in the node set"
    return Result({"url": url, "added": added, "nodes": config.nodes}, text)


def cmd_remove(args: argparse.Namespace, ctx: Context) -> Result:
    config = ClientConfig.load(ctx.home)
    url = config.remove_node(args.url)
    config.save()
    return Result({"url": url, "removed": True, "nodes": config.nodes}, f"Removed {url}")


def cmd_list(args: argparse.Namespace, ctx: Context) -> Result:
    config = ClientConfig.load(ctx.home)
    if not config.nodes:
        return Result([], "No nodes configured. Add one: murmur nodes add http://127.0.0.1:8701")
    return Result([{"url": u} for u in config.nodes], "\n".join(config.nodes))


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    nodes = sub.add_parser("nodes", help="manage the nodes you post to and read from")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", metavar="COMMAND", required=True)
    add = nodes_sub.add_parser("add", parents=[common], help="add a node URL")
    add.add_argument("url", help="e.g. http://127.0.0.1:8701")
    add.set_defaults(handler=cmd_add)
    rm = nodes_sub.add_parser("remove", parents=[common], help="remove a node URL")
    rm.add_argument("url")
    rm.set_defaults(handler=cmd_remove)
    lst = nodes_sub.add_parser("list", parents=[common], help="list configured nodes")
    lst.set_defaults(handler=cmd_list)
