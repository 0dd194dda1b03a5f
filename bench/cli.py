"""``murmur bench NAME [options]`` (or ``python -m bench NAME``): run the benchmarks.

Each benchmark is a module of this package with ``main(argv) -> int``; it prints a
table and writes ``bench/results/NAME.json``. ``all`` runs every one in turn with the
same ``--quick`` choice. See bench/README.md for what each measures.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["BENCHMARKS", "add_bench_command", "main", "run"]

#: name -> (module, one line on what it measures), in the order ``all`` runs them.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "ingest": ("bench.ingest", "events/s verified and stored over HTTP vs raw verify and SQLite"),
    "propagation": ("bench.propagation", "accept on node 1 to live stream of node K, line of 5"),
    "reconcile": ("bench.reconcile", "negentropy between two nodes: rounds, bytes, time"),
    "memory": ("bench.memory", "node RSS ingesting N events, disk bytes per event"),
    "timeline": ("bench.timeline", "50-item timeline, 500 followed authors, 10 filters"),
    "moderation": ("bench.moderation", "10 filters over 1,000 items vs verifying them"),
    "social": ("bench.social", "notifications, followers, counts over 1M events, p50/p95"),
    "web": ("bench.web", "murmur web's timeline over HTTP and first page in Chromium, 3 nodes"),
    "media": ("bench.media", "a posted picture: store bytes per image, node 1 to node 3, 3 nodes"),
    "feed": ("bench.feed", "what's hot, 50 items over 1M events: node p95, client whole page"),
}


def run(name: str, argv: Sequence[str]) -> int:
    """Run one benchmark (or ``all``) with its own arguments; return an exit status."""
    if name == "all":
        quick = ["--quick"] if "--quick" in argv else []
        failed: list[str] = []
        start = time.monotonic()
        for each in BENCHMARKS:
            print(f"\n== {each} ==", flush=True)
            if run(each, quick) != 0:
                failed.append(each)
        print(f"\nall benchmarks done in {time.monotonic() - start:.0f} s"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0
    module = importlib.import_module(BENCHMARKS[name][0])
    status: int = module.main(list(argv))
    return status


def _describe() -> str:
    width = max(map(len, BENCHMARKS))
    lines = [f"  {n.ljust(width)}  {summary}" for n, (_, summary) in BENCHMARKS.items()]
    return "benchmarks:\n" + "\n".join(lines) + f"\n  {'all'.ljust(width)}  every one in turn"


def add_bench_command(sub: Any) -> None:
    """Register ``bench`` on the ``murmur`` CLI's subparsers."""
    bench = sub.add_parser(
        "bench",
        help="measure the node and client against the physical limits (bench/README.md)",
        description=__doc__,
        epilog=_describe() + "\n\nOptions of one benchmark: murmur bench NAME --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("name", choices=[*BENCHMARKS, "all"], metavar="NAME")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="that benchmark's options")
    bench.set_defaults(func=lambda args: run(args.name, args.options))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     epilog=_describe(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="NAME", required=True)
    for name, (_, summary) in BENCHMARKS.items():
        sub.add_parser(name, help=summary, add_help=False)
    sub.add_parser("all", help="every benchmark in turn", add_help=False)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in (*BENCHMARKS, "all"):
        parser.print_help(sys.stderr)
        return 2
    return run(args[0], args[1:])
