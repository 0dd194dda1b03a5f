"""How fast ``murmur web`` serves the timeline (issue #17 point 6), until a ``murmur
bench web`` exists.

Against a running devnet's demo home (``murmur devnet up --seed-demo --dir D``), it
optionally adds posts (``--posts N``, spread over the demo's people and nodes, through
the CLI as a user would) and filters (``--filters N`` mute-words filters that match
nothing, so all N run on every item), then serves :func:`client.web.app.make_app` for
that home in this process on a free loopback port, signs in with the token, and reads
``GET /`` ``--runs`` times after one warm-up read: prints the items on the page and
p50/p95/max in ms, and the time of the first (cold) read.

    python scripts/measure_web.py --home D/client --posts 60 --filters 10 --runs 50
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import time
from pathlib import Path

import httpx
from aiohttp import web

from client.cli.main import main as murmur
from client.moderation.config import FilterSpec, ModerationConfig
from client.web.app import make_app
from client.web.context import WEB

PEOPLE = ("alice", "bob", "carol")


def seed_posts(home: Path, n: int) -> None:
    nodes = [u for u in (home / "config.toml").read_text().split('"') if u.startswith("http")]
    for i in range(n):
        who, node = PEOPLE[i % len(PEOPLE)], nodes[i % len(nodes)]
        argv = ["--home", str(home), "--as", who, "--node", node, "post"]
        if murmur([*argv, f"measure post {i}: the quick brown fox #web", "--json"]) != 0:
            raise SystemExit(f"post {i} failed")


def add_filters(home: Path, n: int) -> None:
    config = ModerationConfig.load(home)
    have = {f.name for f in config.filters}
    for i in range(n):
        name = f"measure-{i}"
        if name not in have:
            params = {"words": [f"zzunused{i}", f"qqnever{i}"]}
            config.add(FilterSpec(name=name, type="mute-words", params=params))
    config.save()


async def measure(home: Path, runs: int) -> None:
    with socket.socket() as s:  # a free port, then told to the app (it checks Host)
        s.bind(("127.0.0.1", 0))
        sock_port = s.getsockname()[1]
    app = make_app(home, host="127.0.0.1", port=sock_port)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sock_port).start()
    url = app[WEB].guard.url()
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.get(url, follow_redirects=True)
            r.raise_for_status()
            origin = url.split("/?")[0]
            t0 = time.perf_counter()
            r = await http.get(origin + "/")
            cold = (time.perf_counter() - t0) * 1000
            items = len(re.findall(r'data-testid="(?:post|hidden-item)"', r.text))
            times, server = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = await http.get(origin + "/")
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                server.append(float(r.headers["Server-Timing"].split("dur=")[1]))
    finally:
        await runner.cleanup()
    print(f"GET / : {items} items; first read {cold:.0f} ms; then {runs} reads:")
    for what, values in (("client", times), ("server", server)):
        values.sort()
        p95 = values[max(0, round(0.95 * len(values)) - 1)]
        print(
            f"  {what}: p50 {statistics.median(values):.0f} ms, p95 {p95:.0f} ms, "
            f"max {values[-1]:.0f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--posts", type=int, default=0)
    p.add_argument("--filters", type=int, default=0)
    p.add_argument("--runs", type=int, default=50)
    args = p.parse_args()
    if args.posts:
        seed_posts(args.home, args.posts)
    if args.filters:
        add_filters(args.home, args.filters)
    asyncio.run(measure(args.home, args.runs))


if __name__ == "__main__":
    main()
