"""Shared pieces of the adversarial input suite (issue #9): real node processes,
a thin HTTP probe, raw MessagePack surgery and a session-wide "inputs tried" tally.

Fixtures are all prefixed ``adv_`` (other suites in this folder define their own).
The helpers below are plain functions: hostile bytes are built by hand here, so
that a test can put exactly one rule violation into an otherwise valid, correctly
*signed* event (the signature is made over the hostile header bytes themselves, so
only the rule under test can reject it).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.encoding import encode
from protocol.events import SIGNING_DOMAIN
from protocol.identity import Identity
from tests.e2e.fedproc import GENEROUS_LIMITS, write_config
from tests.e2e.nodeproc import NodeProcess

MSGPACK = "application/msgpack"
#: Seeds of this suite's identities start here, far from other suites' small seeds.
_SEEDS = itertools.count(0xAD_0000)

# -- the session tally -----------------------------------------------------------------


class Tally:
    """How many hostile inputs each category threw at the code (the lead's figures)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, category: str, n: int = 1) -> None:
        self.counts[category] += n

    def summary(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"adversarial inputs tried: total={total} ({parts})"


@pytest.fixture(scope="session")
def adv_tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Session counter; its summary is printed on the terminal at the end of the run."""
    tally = Tally()
    yield tally
    if tally.counts:
        # Shown even without -s: capture is suspended for the one line.
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        shown = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with shown:
            print("\n" + tally.summary())


# -- nodes -----------------------------------------------------------------------------


def start_node(base: Path, **limits: Any) -> NodeProcess:
    """A real ``python -m node run`` with generous rate limits plus ``limits``."""
    config = write_config(base / "node.toml", limits={**GENEROUS_LIMITS, **limits})
    return NodeProcess(base / "data", "--config", str(config))


@pytest.fixture(scope="module")
def adv_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node per module, rate limits raised so floods are not 429'd."""
    node = start_node(tmp_path_factory.mktemp("adv-node"))
    yield node
    node.stop()


#: Deadlines of :func:`adv_slow_node`, short so slow-drip tests finish quickly.
SLOW_REQUEST_TIMEOUT_MS = 1000
SLOW_BODY_TIMEOUT_MS = 500
SLOW_IDLE_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def adv_slow_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with short request and body deadlines, for slow-drip clients."""
    node = start_node(
        tmp_path_factory.mktemp("adv-slow-node"),
        request_timeout_ms=SLOW_REQUEST_TIMEOUT_MS,
        body_timeout_ms=SLOW_BODY_TIMEOUT_MS,
        idle_timeout_ms=SLOW_IDLE_TIMEOUT_MS,
        # Every test client is 127.0.0.1: let the dripping bodies and the well-behaved
        # client fit in one address's share of the admission gate (a quarter of this).
        max_inflight_ingest=256,
    )
    yield node
    node.stop()


@pytest.fixture(scope="module")
def adv_probe(adv_node: NodeProcess) -> Iterator[Probe]:
    with Probe(adv_node) as probe:
        yield probe


class Probe:
    """A synchronous httpx client to one node, with the checks the suite repeats."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.url = node.url
        self.http = httpx.Client(base_url=node.url, timeout=15)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def ingest(self, *wires: bytes) -> list[dict[str, Any]]:
        """POST a msgpack batch; the per-event results (the request must be a 200)."""
        headers = {"Content-Type": MSGPACK}
        r = self.http.post("/v1/events", content=encode(list(wires)), headers=headers)
        assert r.status_code == 200, r.text
        results: list[dict[str, Any]] = r.json()["results"]
        assert len(results) == len(wires)
        return results

    def stored(self, event_id: bytes) -> bool:
        r = self.http.get(f"/v1/events/{event_id.hex()}")
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200

    def event(self, event_id: bytes) -> dict[str, Any]:
        r = self.http.get(f"/v1/events/{event_id.hex()}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()["event"]
        return doc

    def author_count(self, did: str) -> int:
        """How many events of ``did`` the node holds (its head report), 0 if none."""
        r = self.http.get(f"/v1/authors/{did}/head")
        if r.status_code == 404:
            return 0
        assert r.status_code == 200, r.text
        count: int = r.json()["count"]
        return count

    def stored_total(self) -> int:
        r = self.http.get("/v1/info")
        assert r.status_code == 200, r.text
        total: int = r.json()["counts"]["events"]
        return total

    def healthy(self) -> bool:
        return self.http.get("/health").status_code == 200

    def internal_errors(self) -> int:
        """Responses with status 5xx the node has counted so far (``/metrics``)."""
        text = self.http.get("/metrics").text
        pattern = r'^murmur_http_requests_total\{[^}]*status="5\d\d"\} (\S+)$'
        return sum(int(float(m.group(1))) for m in re.finditer(pattern, text, re.MULTILINE))

    def assert_rejected(
        self,
        wire: bytes,
        code: str | frozenset[str],
        *,
        event_id: bytes | None = None,
        author: str | None = None,
    ) -> None:
        """``wire`` is rejected with exactly ``code`` and nothing of it is stored.

        ``code`` is a set only where spec 0002 §2.8 leaves the code open (an input
        breaking two rules in one decoding step). ``event_id`` (the sha256 of the
        hostile header bytes) must then be unknown to the node, and ``author`` must
        have no event there.
        """
        codes = frozenset([code]) if isinstance(code, str) else code
        before = self.stored_total()
        [result] = self.ingest(wire)
        assert result["status"] == "rejected" and result["id"] is None, result
        assert result["error"] in codes, result
        assert self.stored_total() == before
        if event_id is not None:
            assert not self.stored(event_id)
        if author is not None:
            assert self.author_count(author) == 0


# -- identities and hand-built events ---------------------------------------------------


def new_identity() -> Identity:
    return Identity.from_seed(next(_SEEDS).to_bytes(32, "big"))


def now_ms() -> int:
    return int(time.time() * 1000)


def header_fields(identity: Identity, body_bytes: bytes, **fields: Any) -> dict[str, Any]:
    """A valid v1 header map for ``body_bytes`` (seq 1, now), with ``fields`` replaced."""
    h: dict[str, Any] = {
        "v": 1,
        "net": "murmur",
        "author": identity.did,
        "seq": 1,
        "prev": None,
        "ts": now_ms(),
        "kind": "post",
        "body": hashlib.sha256(body_bytes).digest(),
    }
    h.update(fields)
    return h


def raw_map(pairs: list[tuple[bytes, bytes]], *, prefix: bytes | None = None) -> bytes:
    """A map from already-encoded key and value bytes, in the order given.

    ``prefix`` replaces the canonical map header (e.g. ``de 00 08`` for a map16 of 8).
    """
    head = bytes([0x80 | len(pairs)]) if prefix is None else prefix
    return head + b"".join(k + v for k, v in pairs)


def encoded_pairs(value: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """``value``'s items as canonical (key, value) byte pairs, sorted canonically."""
    return [(encode(k), encode(v)) for k, v in sorted(value.items(), key=lambda kv: kv[0].encode())]


def sign_raw(identity: Identity, header_bytes: bytes, body_bytes: bytes | None) -> bytes:
    """A canonical wire form whose signature is valid over exactly ``header_bytes``."""
    eid = hashlib.sha256(header_bytes).digest()
    return encode([header_bytes, identity.sign(SIGNING_DOMAIN + eid), body_bytes])


def signed(identity: Identity, body: dict[str, Any] | bytes, **fields: Any) -> tuple[bytes, bytes]:
    """(wire, id) of an event with a canonical header and ``body`` (bytes kept as is)."""
    body_bytes = body if isinstance(body, bytes) else encode(body, max_depth=64)
    header = encode(header_fields(identity, body_bytes, **fields))
    return sign_raw(identity, header, body_bytes), hashlib.sha256(header).digest()


# -- raw sockets -------------------------------------------------------------------------


def read_response(sock: socket.socket, deadline_s: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a ``Content-Length`` from ``sock``."""
    end = time.monotonic() + deadline_s
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, end - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        sock.settimeout(max(0.01, end - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def proc_status_kb(pid: int, field: str) -> int:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status``."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match is not None, f"no {field} in /proc/{pid}/status"
    return int(match.group(1))
