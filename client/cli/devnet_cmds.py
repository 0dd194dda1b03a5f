"""``murmur devnet up|status|down|seed``: a local network of real nodes (issue #7).

``up`` runs in the foreground like ``node run`` and returns an exit status; what the
supervisor reports (a node exited, is back) is printed one line at a time, flushed, so
the output can be followed from a file. With ``--json``, ``up`` prints one JSON
document when the devnet is ready (after the demo, with ``--seed-demo``; with the web
client's URL, with ``--web``) and its progress lines go to stderr. ``--web`` also
serves ``murmur web`` for the devnet's home (the demo's alice) once the demo is
seeded, on 127.0.0.1:``--web-port``, and prints its URL with the secret token; Ctrl-C
stops it with the nodes. The machinery is :mod:`client.devnet`.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
from pathlib import Path
from typing import Any, TextIO

from client.cli import read_cmds
from client.cli.output import Context, Result
from client.cli.web_cmds import DEFAULT_PORT as DEFAULT_WEB_PORT
from client.cli.web_cmds import serve_beside
from client.devnet import (
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    MAX_NODES,
    MIN_NODES,
    DevnetError,
    DevnetPlan,
    DevnetState,
    Topology,
    devnet_status,
    make_plan,
    prepare,
    run_devnet,
    stop_devnet,
)
from client.devnet.seed import SeedReport, seed_demo
from client.textsafety import safe_line, safe_text
from protocol.errors import ProtocolError

__all__ = ["register"]

_write_lock = threading.Lock()  # the supervisor loop and the seeding thread both print


def _say(out: TextIO, text: str) -> None:
    """One message, terminal-safe: node log tails and peers' URLs are quoted in them."""
    with _write_lock:
        out.write(safe_text(text.rstrip("\n")) + "\n")
        out.flush()


def _nodes_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not MIN_NODES <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be from {MIN_NODES} to {MAX_NODES}")
    return value


def _port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a TCP port, 1-65535")
    return value


def _table(rows: list[list[str]], indent: str = "  ") -> str:
    cells = [[safe_line(c) for c in r] for r in rows]  # peers' URLs and errors among them
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    )


def _ready_text(plan: DevnetPlan, state: DevnetState, seeding: bool) -> str:
    d = plan.dir
    rows = [["NAME", "URL", "PID", "PEERS", "DATA"]]
    for node, entry in zip(plan.nodes, state.nodes, strict=True):
        peers = ", ".join(node.peer_names) or "-"
        rows.append([node.name, node.url, str(entry.pid), peers, str(node.data_dir)])
    exchange = "peer exchange on" if plan.topology is Topology.MESH else "--no-peer-exchange"
    lines = [
        f"Devnet up: {len(plan.nodes)} node(s), {plan.topology.value} topology ({exchange}), "
        f"in {d} (supervisor pid {state.supervisor_pid})",
        "",
        _table(rows),
        "",
        f"Logs: {d}/nodeK/node.log   State: {state.path}",
    ]
    if not seeding:
        lines += [
            "",
            "Point the client at it (a home of its own keeps your ~/.murmur apart):",
            f"  export MURMUR_HOME={plan.client_home}",
            *(f"  murmur nodes add {u}" for u in plan.urls),
            f"or, for one call: murmur --node {plan.urls[0]} timeline",
        ]
    lines += [
        "",
        f"Status: murmur devnet status --dir {d}",
        f"Stop:   Ctrl-C here, or murmur devnet down --dir {d}",
    ]
    return "\n".join(lines)


def _timeline(home: Path) -> str:
    """Alice's timeline, as ``murmur --as alice timeline`` prints it (its own command,
    run in-process)."""
    parser = argparse.ArgumentParser(add_help=False)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    read_cmds.register(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(["timeline"])
    ctx = Context(
        home=home, as_name="alice", nodes=(), json=False, stdout=io.StringIO(), stderr=io.StringIO()
    )
    result = read_cmds.cmd_timeline(args, ctx)
    return result.text if isinstance(result, Result) else ""


def _seed_text(report: SeedReport, timeline: str, dir: Path, urls: list[str]) -> str:
    home = report.home
    who = ", ".join(n for n in (*report.created, *report.reused))
    if report.already_seeded:
        head = f"The demo was already on the devnet; identities reused ({who})."
    else:
        made = f"created {', '.join(report.created)}" if report.created else "none created"
        head = (
            f"Demo seeded: identities {who} ({made}), {len(report.events)} signed events "
            "published to different nodes, now on every node."
        )
    hello = report.events.get("post:alice", "ID")
    lines = [
        head,
        "",
        "Alice's timeline (murmur timeline):",
        "",
        timeline,
        "",
        f"Try next (the demo home is {home}; alice is its default identity; the demo "
        "keys are unencrypted dev keys, not for real use):",
        f"  export MURMUR_HOME={home}",
        "  murmur timeline                          # alice's timeline, as above",
        "  murmur --as bob timeline",
        f"  murmur thread {hello}",
        "  murmur author carol                      # 'satire' badge from the mod labeler",
        f"  murmur --node {urls[-1]} author alice   # read from the last node only",
        '  murmur post "Hello, devnet"              # signed by alice, sent to every node',
        "  murmur labelers list",
        "  murmur feed hot                          # what's hot, served by the devnet's nodes",
        "  murmur feeds discover                    # feeds announced on your nodes",
        "  murmur id keys alice                     # her key history, checked on every node",
        f"  murmur devnet status --dir {dir}",
    ]
    return "\n".join(lines)


def _web_text(url: str) -> str:
    """The web client's URL, set apart so it is seen at the end of the output."""
    return "\n".join(
        [
            "",
            "Web client (murmur web, as alice) — open this URL in a browser:",
            "",
            f"    {url}",
            "",
            "Only this URL lets a browser in (its token becomes a session cookie). "
            "Ctrl-C here stops the web client and the devnet.",
        ]
    )


def _seed_doc(report: SeedReport, timeline: str) -> dict[str, Any]:
    doc: dict[str, Any] = report.to_json()
    doc["timeline"] = timeline
    return doc


def cmd_up(args: argparse.Namespace, ctx: Context) -> int:
    plan = make_plan(
        nodes=args.count, base_port=args.base_port, topology=args.topology, dir=args.dir,
        feeds=args.feed,
    )  # fmt: skip
    progress = ctx.stderr if ctx.json else ctx.stdout
    for note in prepare(plan):
        _say(ctx.stderr, f"murmur devnet: {note}")
    ready_doc: dict[str, Any] = {}

    def notify(message: str) -> None:
        _say(progress, message)

    def on_ready(state: DevnetState) -> None:
        ready_doc.update(state.to_json())
        if ctx.json:
            if not (args.seed_demo or args.web):
                _say(ctx.stdout, json.dumps(ready_doc, indent=2))
        else:
            _say(ctx.stdout, _ready_text(plan, state, args.seed_demo))
        if args.seed_demo:
            _say(progress, f"\nSeeding the demo in {plan.client_home} ...")

    def seed(cancelled: threading.Event) -> bool:
        try:
            report = seed_demo(plan.client_home, plan.urls, cancelled=cancelled)
            timeline = _timeline(report.home)
        except ProtocolError as exc:
            if cancelled.is_set():
                return False
            _say(
                ctx.stderr,
                f"murmur: error: demo seeding failed: {exc.message}\n"
                f"(the devnet keeps running; try again: murmur devnet seed --dir {plan.dir})",
            )
            if ctx.json:
                ready_doc["demo"] = {"error": exc.code, "message": exc.message}
            return False
        if ctx.json:
            ready_doc["demo"] = _seed_doc(report, timeline)
        else:
            _say(ctx.stdout, "\n" + _seed_text(report, timeline, plan.dir, plan.urls))
        return True

    def started(url: str) -> None:
        if ctx.json:
            ready_doc["web"] = {"url": url}
            _say(ctx.stdout, json.dumps(ready_doc, indent=2))
        else:
            _say(ctx.stdout, _web_text(url))

    def serve(cancelled: threading.Event) -> None:
        """The web client for the devnet's home, until the devnet stops."""
        try:
            serve_beside(plan.client_home, cancelled, port=args.web_port, on_start=started)
        except OSError as exc:
            _say(
                ctx.stderr,
                f"murmur: error: the web client cannot listen on 127.0.0.1:{args.web_port}: "
                f"{exc.strerror or exc}\n(the devnet keeps running; pick another port: "
                "--web-port PORT, or run: murmur web --port PORT)",
            )
            if ctx.json:
                ready_doc["web"] = {"error": "web-port", "message": str(exc)}
                _say(ctx.stdout, json.dumps(ready_doc, indent=2))

    def after_ready(cancelled: threading.Event) -> None:
        if args.seed_demo and not seed(cancelled):
            if ctx.json and not cancelled.is_set():
                _say(ctx.stdout, json.dumps(ready_doc, indent=2))
            return  # the web client is for the demo: not without it
        if args.web:
            serve(cancelled)  # prints the document (--json) once it listens
        elif ctx.json:
            _say(ctx.stdout, json.dumps(ready_doc, indent=2))

    report = run_devnet(
        plan,
        notify=notify,
        on_ready=on_ready,
        after_ready=after_ready if args.seed_demo or args.web else None,
    )
    text = f"Devnet stopped ({len(report.stopped) + len(report.killed)} node(s))"
    if report.killed:
        text += f"; killed after the deadline: {', '.join(report.killed)}"
    _say(progress, text + ".")
    return 0


def _state_of(dir: Path) -> DevnetState:
    root = dir.expanduser().absolute()
    state = DevnetState.load(root)
    if state is None:
        raise DevnetError(
            f"no devnet in {root} (no devnet.json): start one with murmur devnet up --dir {root}"
        )
    return state


def cmd_status(args: argparse.Namespace, ctx: Context) -> Result:
    doc = devnet_status(args.dir)
    names = {n["url"]: n["name"] for n in doc["nodes"]}
    sup = doc["supervisor"]
    head = f"Devnet in {doc['dir']} ({doc['topology']}): supervisor pid {sup['pid']} " + (
        "running" if sup["running"] else "NOT running (murmur devnet down cleans up)"
    )
    rows = [["NAME", "URL", "PID", "PROCESS", "HEALTH", "EVENTS", "PEERS"]]
    for n in doc["nodes"]:
        peers = ", ".join(f"{names.get(p['url'], p['url'])}:{p['state']}" for p in n["peers"])
        rows.append(
            [
                n["name"],
                n["url"],
                str(n["pid"]),
                "up" if n["running"] else "down",
                "ok" if n["healthy"] else (n["error"] or "unhealthy"),
                "-" if n["events"] is None else str(n["events"]),
                peers or "-",
            ]
        )
    return Result(doc, f"{head}\n{_table(rows)}")


def cmd_down(args: argparse.Namespace, ctx: Context) -> Result:
    report = stop_devnet(args.dir)
    if not report.found:
        return Result(report.to_json(), f"No devnet is running in {report.dir} (no devnet.json).")
    how = "stopped" if report.supervisor_was_running else "was not running; stopped its nodes"
    text = (
        f"Stopped the devnet in {report.dir}: supervisor pid {report.supervisor_pid} {how}; "
        f"nodes {', '.join(report.nodes)} are gone."
    )
    if report.killed:
        text += f"\nKilled after the deadline: {', '.join(report.killed)}"
    return Result(report.to_json(), text)


def cmd_seed(args: argparse.Namespace, ctx: Context) -> Result:
    state = _state_of(args.dir)
    urls = [n.url for n in state.nodes]
    report = seed_demo(Path(state.client_home), urls)
    timeline = _timeline(report.home)
    return Result(_seed_doc(report, timeline), _seed_text(report, timeline, state.dir, urls))


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    devnet = sub.add_parser(
        "devnet",
        help="run a local network of nodes (for development and demos)",
        description="Start, inspect and stop a local devnet: real node processes on "
        "127.0.0.1 with their data, logs and state under DIR (default ./.murmur-dev).",
    )
    dsub = devnet.add_subparsers(dest="devnet_command", metavar="COMMAND", required=True)
    dir_help = f"the devnet's directory (default ./{DEFAULT_DIR})"

    up = dsub.add_parser(
        "up",
        parents=[common],
        help="start N nodes and supervise them in the foreground",
        description="Start N nodes on 127.0.0.1 (ports BASE..BASE+N-1, data in DIR/nodeK), "
        "wait until they are healthy, print how to reach them, then keep them running "
        "(a node that exits is restarted) until Ctrl-C, SIGTERM or 'murmur devnet down'.",
    )
    up.add_argument(
        "--nodes",
        dest="count",  # not "nodes": that is the global --node URL list
        type=_nodes_arg,
        default=3,
        metavar="N",
        help=f"how many nodes ({MIN_NODES}-{MAX_NODES}, default 3)",
    )
    up.add_argument(
        "--base-port",
        type=_port_arg,
        default=DEFAULT_BASE_PORT,
        metavar="PORT",
        help=f"port of node1; nodeK gets PORT+K-1 (default {DEFAULT_BASE_PORT})",
    )
    up.add_argument(
        "--topology",
        choices=[t.value for t in Topology],
        default=Topology.MESH.value,
        help="mesh: all peer with all; line: each with its neighbours; star: all with "
        "node1 (default mesh)",
    )
    up.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=dir_help)
    up.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="also serve this feed from every node at /v1/feeds/NAME: a built-in "
        "(whats-hot, friends-of-friends, tag), ./my_feed.py:Class or entry:NAME "
        "(repeatable; every node serves 'hot' and 'friends' already)",
    )
    up.add_argument(
        "--seed-demo",
        action="store_true",
        help="publish a demo conversation (alice, bob, carol, a labeler) in DIR/client",
    )
    up.add_argument(
        "--web",
        action="store_true",
        help="also serve the web client (murmur web) for DIR/client, after the demo; "
        "prints its URL with the secret token",
    )
    up.add_argument(
        "--web-port",
        type=_port_arg,
        default=DEFAULT_WEB_PORT,
        metavar="PORT",
        help=f"port of the web client on 127.0.0.1 (default {DEFAULT_WEB_PORT})",
    )
    up.set_defaults(handler=cmd_up)

    status = dsub.add_parser(
        "status", parents=[common], help="each node's process, health, event count and peers"
    )
    status.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=dir_help)
    status.set_defaults(handler=cmd_status)

    down = dsub.add_parser(
        "down",
        parents=[common],
        help="stop the devnet running in DIR (from another terminal)",
        description="Signal the devnet's supervisor to stop its nodes and wait until every "
        "process is gone; whatever is still running after the deadline is killed.",
    )
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=dir_help)
    down.set_defaults(handler=cmd_down)

    seed = dsub.add_parser(
        "seed",
        parents=[common],
        help="publish the demo conversation on a running devnet (as --seed-demo does)",
    )
    seed.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=dir_help)
    seed.set_defaults(handler=cmd_seed)
