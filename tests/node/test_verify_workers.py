"""node.verify.Verifier: decoding and signature checks in worker processes or threads,
coalesced across requests (spec 0004 #verify-workers).

Real worker processes (a forkserver pool) and real threads; a worker is killed with
SIGKILL to check that only the work in flight fails, retryably, and that the pool is
started again. Waits are on conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer

from node import create_app
from node.config import ConfigError, load_config
from node.state import VERIFIER
from node.verify import PART, Checked, Verifier, Wire
from protocol.errors import EncodingError, ProtocolError, UnavailableError
from protocol.events import Event, try_decode_event
from protocol.limits import MAX_WIRE_BYTES
from tests.node.conftest import T0, Clock, batch, forge, make_config, new_author

MSGPACK = "application/msgpack"
NOW = T0 + 60_000


async def _until(cond: Callable[[], bool], within: float = 10.0) -> None:
    """Yield to the other tasks until ``cond()`` holds (deadline: ``within`` s)."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110 - other tasks' and threads' state, bounded
            await asyncio.sleep(0)


@pytest.fixture
async def make_verifier() -> AsyncIterator[Callable[[str], Verifier]]:
    made: list[Verifier] = []

    def make(mode: str) -> Verifier:
        verifier = Verifier(workers=2, net="murmur", max_event_bytes=MAX_WIRE_BYTES, mode=mode)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


def _mixed_wires(clock: Clock) -> list[Wire]:
    """Valid events of two authors, and one of each way to be refused."""
    alice, bob = new_author(clock), new_author(clock)
    return [
        alice.post("one").wire,
        bob.post("two").wire,
        forge(alice.identity, sig=bytes(64)),  # bad signature
        bob.sign("post", {"text": "elsewhere"}, net="testnet").wire,  # wrong network
        b"\x00" * (MAX_WIRE_BYTES + 1),  # too large
        EncodingError("refused before verification"),  # a ProtocolError item
        alice.sign("post", {"text": "ahead"}, ts=NOW + 86_400_000).wire,  # against now_ms
        b"\xc1",  # not MessagePack
        alice.post("three").wire,
    ]


def _shape(result: Checked) -> object:
    """Comparable form: an Event itself, an error by its class and code."""
    if isinstance(result, ProtocolError):
        return (type(result), result.code)
    return result


@pytest.mark.parametrize("mode", ["processes", "threads"])
async def test_results_match_try_decode_event(
    mode: str, make_verifier: Callable[[str], Verifier]
) -> None:
    verifier = make_verifier(mode)
    assert verifier.mode == mode
    wires = _mixed_wires(Clock())
    expected = [
        w if isinstance(w, ProtocolError) else try_decode_event(w, now_ms=NOW, allow_v2=True)
        for w in wires
    ]
    got = await verifier.verify(wires, NOW)
    assert [_shape(r) for r in got] == [_shape(r) for r in expected]
    codes = [r.code for r in got if isinstance(r, ProtocolError)]
    assert codes == [
        "invalid-signature",
        "wrong-network",
        "too-large",
        "encoding-error",
        "future-timestamp",
        "malformed",
    ]
    assert sum(isinstance(r, Event) for r in got) == 3
    assert verifier.verified == len(wires) - 1  # the ProtocolError item is not checked
    assert verifier.jobs == 1


async def test_a_big_batch_is_cut_into_parts(make_verifier: Callable[[str], Verifier]) -> None:
    verifier = make_verifier("threads")
    author = new_author(Clock())
    wires: list[Wire] = [author.post(f"n{i}").wire for i in range(PART * 2 + 1)]
    got = await verifier.verify(wires, NOW)
    assert [r.wire for r in got if isinstance(r, Event)] == wires
    assert verifier.jobs == 3


@pytest.mark.parametrize("mode", ["processes", "threads"])
async def test_concurrent_one_event_calls_share_jobs(
    mode: str, make_verifier: Callable[[str], Verifier]
) -> None:
    verifier = make_verifier(mode)
    clock = Clock()
    wires: list[Wire] = [new_author(clock).post(f"call {i}").wire for i in range(50)]
    wires[17] = forge(new_author(clock).identity, sig=bytes(64))
    results = await asyncio.gather(*(verifier.verify([w], NOW) for w in wires))
    for i, (wire, result) in enumerate(zip(wires, results, strict=True)):
        assert len(result) == 1
        if i == 17:
            assert isinstance(result[0], ProtocolError) and result[0].code == "invalid-signature"
        else:
            assert isinstance(result[0], Event) and result[0].wire == wire
    # All 50 submit in one loop turn: one job per free slot, then the rest as one job.
    assert verifier.jobs == verifier._jobs._max_inflight + 1 < 50


async def test_a_worker_killed_mid_job_fails_only_that_call_and_the_pool_restarts(
    make_verifier: Callable[[str], Verifier],
) -> None:
    verifier = make_verifier("processes")
    await verifier.start()
    author = new_author(Clock())
    wires: list[Wire] = [author.post(f"n{i}").wire for i in range(PART * 8)]
    pids = verifier.worker_pids()
    assert len(pids) == 2
    call = asyncio.ensure_future(verifier.verify(wires, NOW))
    await _until(lambda: verifier.jobs > 0)  # handed to the workers
    assert not call.done()
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(UnavailableError) as info:
        await call
    assert info.value.code == "unavailable" and info.value.status == 503
    assert verifier.restarts == 1
    again = await verifier.verify(wires[:3], NOW)
    assert [r.wire for r in again if isinstance(r, Event)] == wires[:3]
    assert verifier.restarts == 1
    assert pids[0] not in verifier.worker_pids() and len(verifier.worker_pids()) == 2


async def test_a_worker_killed_between_jobs_costs_no_request(
    make_verifier: Callable[[str], Verifier],
) -> None:
    """A worker that dies idle is noticed at once (its socket closes) and replaced at
    the next job: no request pays for it."""
    verifier = make_verifier("processes")
    author = new_author(Clock())
    first, second = (author.post(f"n{i}").wire for i in range(2))
    (warm,) = await verifier.verify([first], NOW)
    assert isinstance(warm, Event)
    old = verifier.worker_pids()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    await _until(lambda: verifier.restarts == len(old))  # each one's reader saw EOF
    (result,) = await verifier.verify([second], NOW)
    assert isinstance(result, Event) and result.wire == second
    assert not set(old) & set(verifier.worker_pids())


async def test_a_closed_verifier_refuses_with_unavailable(
    make_verifier: Callable[[str], Verifier],
) -> None:
    verifier = make_verifier("threads")
    await verifier.close()
    with pytest.raises(UnavailableError, match="stopping"):
        await verifier.verify([b"\xc1"], NOW)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="verify mode must be one of"):
        Verifier(workers=1, net="murmur", max_event_bytes=MAX_WIRE_BYTES, mode="bogus")


def test_verify_in_config(tmp_path: Path) -> None:
    """spec 0004 #verify-workers: ``node.verify_in`` is auto, processes or threads."""
    path = tmp_path / "node.toml"
    path.write_text('[node]\nverify_in = "bogus"\n')
    with pytest.raises(ConfigError, match=r'node\.verify_in must be "auto", "processes"'):
        load_config(path)
    path.write_text("[node]\nverify_in = 2\n")
    with pytest.raises(ConfigError, match=r"node\.verify_in must be str"):
        load_config(path)
    for mode in ("processes", "threads", "auto"):
        path.write_text(f'[node]\nverify_in = "{mode}"\n')
        assert load_config(path).verify_in == mode
    assert load_config(None).verify_in == "auto"


@pytest.fixture
async def process_node(tmp_path: Path) -> AsyncIterator[tuple[TestServer, httpx.AsyncClient]]:
    clock = Clock()
    config = replace(
        make_config(tmp_path / "node", clock, max_inflight_ingest=128), verify_in="processes"
    )
    server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await server.start_server()
    http = httpx.AsyncClient(base_url=str(server.make_url("")).rstrip("/"), timeout=30)
    try:
        yield server, http
    finally:
        await http.aclose()
        await server.close()


async def test_one_event_posts_over_http_share_verify_jobs(
    process_node: tuple[TestServer, httpx.AsyncClient],
) -> None:
    """32 clients post one event each at once to a node verifying in processes: all are
    accepted, and /metrics counts fewer verify jobs than requests."""
    server, http = process_node
    verifier = server.app[VERIFIER]
    assert verifier.mode == "processes"
    coalescer = verifier._jobs
    real = coalescer._run

    first_jobs = coalescer._max_inflight

    async def held(job: list[tuple[Wire, int]]) -> list[Checked]:
        # The first jobs' workers are "busy" until every other request waits: then
        # timing cannot decide how the rest are grouped.
        if coalescer.jobs <= first_jobs:
            await _until(lambda: len(coalescer._queue) >= 32 - first_jobs)
        return await real(job)

    coalescer._run = held
    clock = Clock()
    events = [new_author(clock).post(f"client {i}") for i in range(32)]

    async def post(ev: Event) -> str:
        r = await http.post("/v1/events", content=batch(ev), headers={"Content-Type": MSGPACK})
        assert r.status_code == 200, r.text
        status: str = r.json()["results"][0]["status"]
        return status

    assert await asyncio.gather(*(post(ev) for ev in events)) == ["accepted"] * 32
    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in (await http.get("/metrics")).text.splitlines()
        if line.startswith("murmur_verify_")
    }
    assert metrics["murmur_verify_jobs_total"] < 32
    assert metrics["murmur_verify_jobs_total"] == verifier.jobs
    assert metrics["murmur_verify_pool_restarts_total"] == 0
