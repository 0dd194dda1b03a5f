"""Realistic signed events for benchmarks, generated deterministically and in parallel.

Each author has a proper chain (``seq`` 1, 2, ... with ``prev`` linking them) that
starts with a profile; the rest is a mix close to a public timeline: posts (a fifth of
them replies, some quoting, some tagged) with 5-50 words of text, likes, reposts and
follows. Events are interleaved round-robin over the authors, so a batch holds many
authors, the way a busy node receives them. Signing is the slow part, so authors are
split over worker processes; the same arguments always give the same bytes.
"""

from __future__ import annotations

import multiprocessing
import random
from dataclasses import dataclass
from typing import Any

from bench.common import cpu_count
from protocol.events import sign_event
from protocol.identity import Identity

__all__ = ["Dataset", "generate"]

_VOCAB = (
    "the of and to in is you that it he was for on are as with his they at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her "
    "would make like him into time has look two more write go see number no way could people "
    "my than first water been call who oil its now find long down day did get come made may "
    "part network node post federate signature timeline moderation label filter murmur open "
    "protocol decentralized public conversation coffee music art city rain weekend news"
).split()


@dataclass(frozen=True, slots=True)
class Dataset:
    """``wires`` in posting order; ``authors`` are the dids; ``ids`` match ``wires``."""

    wires: list[bytes]
    ids: list[bytes]
    authors: list[str]
    kinds: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(len(w) for w in self.wires)


def _seed_of(seed: int, author: int) -> bytes:
    return random.Random(f"{seed}/author/{author}").randbytes(32)


def _body(kind: str, rng: random.Random, recent: list[bytes], dids: list[str]) -> dict[str, Any]:
    if kind == "post":
        body: dict[str, Any] = {
            "text": " ".join(rng.choice(_VOCAB) for _ in range(rng.randrange(5, 51))),
            "langs": [rng.choice(("en", "en", "en", "fr", "de", "pt-BR", "ja"))],
        }
        if rng.random() < 0.15:
            body["tags"] = rng.sample(["news", "art", "dev", "music", "rain", "city"], 2)
        if recent and rng.random() < 0.2:
            body["reply"] = {"root": rng.choice(recent), "parent": rng.choice(recent)}
        elif recent and rng.random() < 0.05:
            body["quote"] = rng.choice(recent)
        return body
    if kind in ("like", "repost"):
        return {"target": rng.choice(recent) if recent else rng.randbytes(32)}
    if kind == "follow":
        return {"subject": rng.choice(dids)}
    raise ValueError(kind)


def _kind(rng: random.Random, mix: bool) -> str:
    if not mix:
        return "post"
    r = rng.random()
    if r < 0.70:
        return "post"
    if r < 0.85:
        return "like"
    if r < 0.90:
        return "repost"
    return "follow"


def _author_chains(
    job: tuple[int, list[int], int, int, int, int, bool],
) -> list[tuple[int, bytes, bytes, str]]:
    """Events of some authors: (global slot, id, wire, kind) each."""
    seed, author_ix, n_authors, n_events, ts_start, ts_step, mix = job
    all_dids = [Identity.from_seed(_seed_of(seed, a)).did for a in range(min(n_authors, 2000))]
    out: list[tuple[int, bytes, bytes, str]] = []
    for a in author_ix:
        who = Identity.from_seed(_seed_of(seed, a))
        rng = random.Random(f"{seed}/events/{a}")
        recent: list[bytes] = []
        prev: bytes | None = None
        count = n_events // n_authors + (1 if a < n_events % n_authors else 0)
        for k in range(count):
            slot = k * n_authors + a
            if k == 0:
                kind, body = "profile", {"name": f"user {a}", "bio": "benchmark author"}
            else:
                kind = _kind(rng, mix)
                body = _body(kind, rng, recent, all_dids)
            ev = sign_event(
                who, kind=kind, body=body, seq=k + 1, prev=prev, ts=ts_start + slot * ts_step
            )
            prev = ev.id
            recent.append(ev.id)
            if len(recent) > 20:
                recent.pop(0)
            out.append((slot, ev.id, ev.wire, kind))
    return out


def generate(
    n: int,
    *,
    authors: int = 1000,
    seed: int = 1,
    ts_start: int = 1_760_000_000_000,
    ts_step: int = 1,
    mix: bool = True,
    workers: int | None = None,
) -> Dataset:
    """``n`` events by ``authors`` authors (fewer if ``n`` is smaller), deterministic."""
    authors = max(1, min(authors, n))
    workers = max(1, workers or cpu_count())
    parts = [list(range(w, authors, workers)) for w in range(workers)]
    jobs = [(seed, part, authors, n, ts_start, ts_step, mix) for part in parts if part]
    if len(jobs) == 1 or n < 2000:
        results = [_author_chains(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            results = pool.map(_author_chains, jobs)
    merged = sorted((row for part in results for row in part), key=lambda r: r[0])
    dids = [Identity.from_seed(_seed_of(seed, a)).did for a in range(authors)]
    return Dataset(
        wires=[r[2] for r in merged],
        ids=[r[1] for r in merged],
        authors=dids,
        kinds=[r[3] for r in merged],
    )
