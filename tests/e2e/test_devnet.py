"""End-to-end: ``murmur devnet`` with real node processes (issue #7).

The devnet runs as ``python -m client.cli.main devnet up ...`` in a subprocess, its
output going to a file the test polls (deadline loops, never sleeps). Covered: a line
of three nodes carries a post from node 1 to node 3 through node 2; a node killed with
SIGKILL is restarted by the supervisor and federation resumes through it; ``devnet
down`` leaves no process behind. ``--seed-demo`` on two nodes, seeding again (nothing
new is published), and Ctrl-C (SIGINT) stopping everything. A node that cannot start
fails ``up`` with its name and the tail of its log.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from client.cli import main
from client.devnet import DevnetError, make_plan, run_devnet
from client.devnet.state import pid_alive
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import ROOT

pytestmark = pytest.mark.e2e

T = TypeVar("T")
POLL_S = 0.1  # poll interval of the deadline loops


def wait_until(
    what: str, probe: Callable[[], T | None], deadline_s: float = 30.0, log: Path | None = None
) -> T:
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= end:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(POLL_S)


def free_ports(count: int) -> int:
    """A base port such that ``count`` consecutive ports are free (outside ephemeral range)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(12_000, low - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise AssertionError("no free port range found")


class Devnet:
    """``murmur devnet up`` in a subprocess; its stdout and stderr in files."""

    def __init__(self, dir: Path, *args: str) -> None:
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        self.out = dir.parent / f"{dir.name}.out"
        self.err = dir.parent / f"{dir.name}.err"
        self.seen_pids: set[int] = set()
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "client.cli.main", "devnet", "up", "--dir", str(dir), *args],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_for(self, text: str, deadline_s: float = 30.0) -> None:
        def probe() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"devnet up exited {self.proc.returncode}:\n{self.output()}")
            return text in self.out.read_text()

        wait_until(repr(text), probe, deadline_s, log=self.err)

    def state(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.dir / "devnet.json").read_text())
        self.seen_pids.update(n["pid"] for n in doc["nodes"] if n["pid"])
        return doc

    def murmur(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client.cli.main", *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cleanup(self) -> None:
        """Whatever happened: no supervisor, no node left running."""
        if (self.dir / "devnet.json").exists():
            self.state()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in self.seen_pids:
            if pid_alive(pid) and str(self.dir) in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def devnets(tmp_path: Path) -> Iterator[Callable[..., Devnet]]:
    started: list[Devnet] = []

    def start(name: str, *args: str) -> Devnet:
        started.append(Devnet(tmp_path / name, *args))
        return started[-1]

    try:
        yield start
    finally:
        for d in started:
            d.cleanup()


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_line_devnet_multi_hop_restart_and_down(
    tmp_path: Path, devnets: Callable[..., Devnet], capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_ports(3)
    dn = devnets("line", "--nodes", "3", "--topology", "line", "--base-port", str(base))
    dn.wait_for("Devnet up: 3 node(s), line topology")
    state = dn.state()
    urls = [n["url"] for n in state["nodes"]]
    assert urls == [f"http://127.0.0.1:{base + k}" for k in range(3)]
    assert state["supervisor_pid"] == dn.proc.pid
    for k in (1, 2, 3):
        assert (dn.dir / f"node{k}" / "node.log").exists()

    # The line stays a line: node 3 never peers with node 1 (no peer exchange).
    def live_peers() -> dict[str, Any] | None:
        run = dn.murmur("devnet", "status", "--dir", str(dn.dir), "--json")
        assert run.returncode == 0, run.stderr
        doc: dict[str, Any] = json.loads(run.stdout)
        ok = all(
            n["healthy"] and all(p["state"] == "live" for p in n["peers"]) for n in doc["nodes"]
        )
        return doc if ok and all(n["peers"] for n in doc["nodes"]) else None

    status = wait_until("every peer link live", live_peers, log=dn.err)
    peers = {n["name"]: sorted(p["url"] for p in n["peers"]) for n in status["nodes"]}
    assert peers == {"node1": [urls[1]], "node2": [urls[0], urls[2]], "node3": [urls[1]]}
    assert status["supervisor"] == {"pid": dn.proc.pid, "running": True}
    assert [n["pid"] for n in status["nodes"]] == [n["pid"] for n in state["nodes"]]

    cli = Cli(tmp_path / "home", capsys)
    cli.json("id", "new", "x", "--no-encrypt")

    def post_on_1_read_on_3(text: str) -> None:
        eid = cli.json("--node", urls[0], "post", text)["id"]

        def on_node3() -> bool:
            code = main(["--home", str(cli.home), "--node", urls[2], "author", "x", "--json"])
            out, _ = capsys.readouterr()
            return code == 0 and eid in [p["id"] for p in json.loads(out)["posts"]]

        wait_until(f"post {eid[:12]} on node 3", on_node3, log=dn.err)

    post_on_1_read_on_3("hello from node 1, two hops away")

    # SIGKILL node 2: the supervisor restarts it on the same port and data.
    old = dn.state()["nodes"][1]["pid"]
    os.kill(old, signal.SIGKILL)
    dn.wait_for("node2 exited (code -9); restarting")
    dn.wait_for(f"node2 is back at {urls[1]}")
    new = dn.state()["nodes"][1]["pid"]
    assert new != old and pid_alive(new) and not pid_alive(old)
    assert healthy(urls[1])
    # ...and the line carries posts again (nodes 1 and 3 reconnected to it).
    post_on_1_read_on_3("after node 2 came back")

    pids = dn.seen_pids | {dn.proc.pid}
    down = dn.murmur("devnet", "down", "--dir", str(dn.dir), "--json")
    assert down.returncode == 0, down.stderr
    doc = json.loads(down.stdout)
    assert doc["found"] and doc["supervisor_was_running"] and doc["killed"] == []
    assert dn.proc.wait(timeout=10) == 0
    assert not [p for p in pids if pid_alive(p)]
    assert not (dn.dir / "devnet.json").exists()
    assert "Devnet stopped (3 node(s))." in dn.out.read_text()
    assert not any(healthy(u) for u in urls)


def test_seed_demo_reseed_and_ctrl_c(
    devnets: Callable[..., Devnet], capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_ports(2)
    feed_file = ROOT / "examples" / "feeds" / "long_posts.py"  # the README's feed
    dn = devnets(
        "demo", "--nodes", "2", "--base-port", str(base), "--seed-demo",
        "--feed", f"long={feed_file}:LongPosts",
    )  # fmt: skip
    dn.wait_for("Try next", deadline_s=45)
    out = dn.out.read_text()
    assert "Demo seeded: identities alice, bob, carol, mod" in out
    timeline = out.split("Alice's timeline (murmur timeline):", 1)[1].split("Try next", 1)[0]
    assert "Hi Alice! Your post reached node 2." in timeline  # bob, on node 2
    assert "BREAKING: local node reaches consensus with itself" in timeline
    assert '[badge: labeled "satire"' in timeline  # mod's label, alice subscribed
    assert 'author marked it "spoiler"' in timeline
    assert "The butler did it." not in timeline  # behind its warning
    home = dn.dir / "client"
    assert f"export MURMUR_HOME={home}" in out

    # Every node holds every demo event; alice is the default identity of the home.
    state = dn.state()
    counts = [httpx.get(n["url"] + "/v1/info", timeout=5).json()["counts"] for n in state["nodes"]]
    assert counts[0]["events"] == counts[1]["events"] >= 16
    assert Cli(home, capsys).json("id", "show")["name"] == "alice"
    # People are rotatable (spec 0008 #clients), with their recovery keys beside the home,
    # never in it; the labeler is a did:key. Alice's key history is on every node.
    ids = {i["name"]: i["did"] for i in Cli(home, capsys).json("id", "list")}
    assert all(ids[n].startswith("did:murmur:") for n in ("alice", "bob", "carol"))
    assert ids["mod"].startswith("did:key:")
    assert len(list((dn.dir / "recovery").glob("*-recovery-0-*.key"))) == 3
    assert not list(home.rglob("*recovery*"))
    keys = Cli(home, capsys).json("id", "keys", "alice")
    assert [k["kind"] for k in keys["key_events"]] == ["genesis"] and keys["withheld"] == {}

    # Seeding again reuses everything and publishes nothing.
    again = Cli(home, capsys).json("devnet", "seed", "--dir", str(dn.dir))
    assert again["already_seeded"] is True
    assert again["created"] == [] and again["reused"] == ["alice", "bob", "carol", "mod"]
    after = [httpx.get(n["url"] + "/v1/info", timeout=5).json()["counts"] for n in state["nodes"]]
    assert after == counts

    # Feeds (issue #21): every node serves hot, friends and the --feed file; alice's home
    # subscribes to 'hot' as the demo announced it; the README's feed file runs locally
    # and served by a devnet node, announced and subscribed to.
    cli = Cli(home, capsys)
    for node in state["nodes"]:
        served = httpx.get(node["url"] + "/v1/feeds", timeout=5).json()["feeds"]
        assert [f["name"] for f in served] == ["friends", "hot", "long"]
    liked = again["events"]["post:bob"]  # the one post alice liked
    assert [p["id"] for p in cli.json("feed", "hot")["posts"]] == [liked]
    long_post = cli.post("carol", "A thread on gossip protocols, unrolled. " * 10)
    cli.json("feeds", "add", "mine", f"{feed_file}:LongPosts")
    assert [p["id"] for p in cli.json("feed", "mine")["posts"]] == [long_post]
    cli.json("feeds", "announce", "long", "--node", state["nodes"][-1]["url"], as_name="carol")
    cli.json("feeds", "add", "carols", "--from", f"{ids['carol']}/long")
    doc = cli.json("feed", "carols", as_name="bob")
    assert [p["id"] for p in doc["posts"]] == [long_post]
    assert doc["feed"]["node"] == state["nodes"][-1]["url"] and doc["feed"]["dropped"] == {}

    # Ctrl-C: SIGINT to the supervisor stops every node and removes the state file.
    pids = dn.seen_pids
    dn.proc.send_signal(signal.SIGINT)
    assert dn.proc.wait(timeout=30) == 0
    assert not [p for p in pids if pid_alive(p)]
    assert not (dn.dir / "devnet.json").exists()


def test_seed_demo_with_web_prints_a_url_that_opens_alices_timeline(
    devnets: Callable[..., Devnet],
) -> None:
    """Issue #17 point 1 (``make run``): ``devnet up --seed-demo --web`` serves ``murmur
    web`` for the demo home once the demo is seeded and prints its token URL; the URL
    answers 200 with a session (alice's timeline, the demo's posts), the bare origin
    403 (spec 0007 #web-security); Ctrl-C stops the web client with the nodes."""
    base = free_ports(3)
    web_port = base + 2
    dn = devnets(
        "web",
        *("--nodes", "2", "--base-port", str(base), "--seed-demo"),
        *("--web", "--web-port", str(web_port)),
    )
    origin = f"http://127.0.0.1:{web_port}"
    dn.wait_for(f"{origin}/?token=", deadline_s=60)
    out = dn.out.read_text()
    assert out.index("Try next") < out.index("Web client (murmur web, as alice)")
    found = re.search(rf"^    ({re.escape(origin)}/\?token=[A-Za-z0-9_-]+)$", out, re.M)
    assert found is not None, out
    with httpx.Client(timeout=15, follow_redirects=True) as web:
        assert web.get(origin + "/").status_code == 403  # no token, no session
        page = web.get(found.group(1))
        assert page.status_code == 200, page.text[:500]
        assert str(page.url) == origin + "/" and web.cookies  # the token left for a cookie
        assert "Hi Alice! Your post reached node 2." in page.text
        assert web.get(origin + "/notifications").status_code == 200
    dn.proc.send_signal(signal.SIGINT)
    assert dn.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(origin + "/", timeout=5)


def test_a_node_that_cannot_start_fails_up_with_its_log(tmp_path: Path) -> None:
    base = free_ports(2)
    plan = make_plan(nodes=2, base_port=base, dir=tmp_path / "dn")
    messages: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", base + 1))  # node2's port, taken after the checks
        blocker.listen()
        with pytest.raises(DevnetError) as exc:
            run_devnet(plan, notify=messages.append, on_ready=lambda state: None)
    message = exc.value.message
    assert message.startswith(f"node2 exited with code 1 while starting on port {base + 1}")
    assert str(plan.nodes[1].log_path) in message
    assert "the port is already in use" in message  # the tail of node2's log
    assert not (plan.dir / "devnet.json").exists()
    assert not healthy(plan.urls[0])  # node1 started, and was stopped
