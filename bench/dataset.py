"""Realistic signed events for benchmarks, generated deterministically and in parallel.

Each author has a proper chain (``seq`` 1, 2, ... with ``prev`` linking them) that
starts with a profile; the rest is a mix close to a public timeline: posts (a fifth of
them replies, some quoting, some tagged) with 5-50 words of text, likes, reposts and
follows. Events are interleaved round-robin over the authors, so a batch holds many
authors, the way a busy node receives them. Signing is the slow part, so authors are
split over worker processes; the same arguments always give the same bytes.

With ``rotatable=True`` the same kind of corpus is written by ``did:murmur`` authors
(spec 0008): each chain starts with the author's genesis instead of the profile's
place, every later event is a v2 event signed by the current signing key with ``kev``
naming the latest key event, and about :data:`ROTATE_SHARE` of the events are
rotations (signed by the pre-committed next key, handing over to a new signing key).
"""

from __future__ import annotations

import multiprocessing
import random
from dataclasses import dataclass
from typing import Any

from bench.common import cpu_count
from protocol import kinds
from protocol.encoding import encode
from protocol.events import Event, sign_event, sign_event_v2, sign_genesis
from protocol.identity import Identity, did_murmur_from_genesis_body, next_key_commitment

__all__ = ["ROTATE_SHARE", "Dataset", "generate"]

#: The share of a rotatable author's events (after the genesis) that are rotations.
ROTATE_SHARE = 0.01

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


class _Keys:
    """A rotatable author's keys, derived from the seed: signing key ``k`` and next key
    ``k`` (the one the state of key event ``k`` commits to), one recovery key."""

    def __init__(self, seed: int, author: int) -> None:
        self._base = f"{seed}/author/{author}"
        self._made: dict[str, Identity] = {}
        self.recovery = self._key("recovery")

    def _key(self, name: str) -> Identity:
        key = self._made.get(name)
        if key is None:
            seed = random.Random(f"{self._base}/{name}").randbytes(32)
            key = self._made[name] = Identity.from_seed(seed)
        return key

    def signing(self, k: int) -> Identity:
        return self._key(f"signing/{k}")

    def next(self, k: int) -> Identity:
        return self._key(f"next/{k}")

    def genesis_body(self) -> dict[str, Any]:
        return {
            "signing": self.signing(0).public.raw,
            "next": next_key_commitment(self.next(0).public.raw),
            "recovery": [self.recovery.public.raw],
        }


def _murmur_did(seed: int, author: int) -> str:
    """The did:murmur of an author's genesis (no signature needed: spec 0008 #did-murmur)."""
    return did_murmur_from_genesis_body(encode(_Keys(seed, author).genesis_body()))


def _dids(seed: int, n_authors: int, rotatable: bool) -> list[str]:
    if rotatable:
        return [_murmur_did(seed, a) for a in range(n_authors)]
    return [Identity.from_seed(_seed_of(seed, a)).did for a in range(n_authors)]


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


class _RotatableChain:
    """Signs one did:murmur author's chain: the genesis, then v2 events and rotations."""

    def __init__(self, seed: int, author: int) -> None:
        self.keys = _Keys(seed, author)
        self.epoch = 0  # rotations so far
        self.kev: bytes | None = None
        self.author = ""

    def genesis(self, ts: int) -> Event:
        g = sign_genesis(
            self.keys.signing(0), next_key=self.keys.next(0).public.raw,
            recovery=[self.keys.recovery.public.raw], ts=ts,
        )  # fmt: skip
        self.author, self.kev = g.author, g.id
        return g

    def rotate(self, seq: int, prev: bytes, ts: int) -> Event:
        """Rotation ``epoch + 1``: signed by the pre-committed next key (spec 0008 #rotate)."""
        k = self.epoch + 1
        body = {
            "signing": self.keys.signing(k).public.raw,
            "next": next_key_commitment(self.keys.next(k).public.raw),
        }
        ev = sign_event_v2(
            self.keys.next(self.epoch), author=self.author, kind=kinds.ROTATE, body=body,
            seq=seq, prev=prev, kev=self.kev, ts=ts,
        )  # fmt: skip
        self.epoch, self.kev = k, ev.id
        return ev

    def sign(self, kind: str, body: dict[str, Any], seq: int, prev: bytes, ts: int) -> Event:
        return sign_event_v2(
            self.keys.signing(self.epoch), author=self.author, kind=kind, body=body,
            seq=seq, prev=prev, kev=self.kev, ts=ts,
        )  # fmt: skip


def _author_chains(
    job: tuple[int, list[int], int, int, int, int, bool, bool],
) -> list[tuple[int, bytes, bytes, str]]:
    """Events of some authors: (global slot, id, wire, kind) each."""
    seed, author_ix, n_authors, n_events, ts_start, ts_step, mix, rotatable = job
    all_dids = _dids(seed, min(n_authors, 2000), rotatable)
    out: list[tuple[int, bytes, bytes, str]] = []
    for a in author_ix:
        who = None if rotatable else Identity.from_seed(_seed_of(seed, a))
        chain = _RotatableChain(seed, a) if rotatable else None
        rng = random.Random(f"{seed}/events/{a}")
        recent: list[bytes] = []
        prev: bytes | None = None
        count = n_events // n_authors + (1 if a < n_events % n_authors else 0)
        for k in range(count):
            slot = k * n_authors + a
            ts = ts_start + slot * ts_step
            if chain is not None and k == 0:
                ev = chain.genesis(ts)
            elif chain is not None and prev is not None and k > 1 and rng.random() < ROTATE_SHARE:
                ev = chain.rotate(k + 1, prev, ts)
            else:
                if k == 0 or (chain is not None and k == 1):
                    kind, body = "profile", {"name": f"user {a}", "bio": "benchmark author"}
                else:
                    kind = _kind(rng, mix)
                    body = _body(kind, rng, recent, all_dids)
                if chain is not None and prev is not None:
                    ev = chain.sign(kind, body, k + 1, prev, ts)
                else:
                    assert who is not None  # a did:key author
                    ev = sign_event(who, kind=kind, body=body, seq=k + 1, prev=prev, ts=ts)
            kind = ev.kind
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
    rotatable: bool = False,
) -> Dataset:
    """``n`` events by ``authors`` authors (fewer if ``n`` is smaller), deterministic;
    ``did:murmur`` authors with v2 events if ``rotatable`` (see the module doc)."""
    authors = max(1, min(authors, n))
    workers = max(1, workers or cpu_count())
    parts = [list(range(w, authors, workers)) for w in range(workers)]
    jobs = [
        (seed, part, authors, n, ts_start, ts_step, mix, rotatable) for part in parts if part
    ]
    if len(jobs) == 1 or n < 2000:
        results = [_author_chains(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            results = pool.map(_author_chains, jobs)
    merged = sorted((row for part in results for row in part), key=lambda r: r[0])
    dids = _dids(seed, authors, rotatable)
    return Dataset(
        wires=[r[2] for r in merged],
        ids=[r[1] for r in merged],
        authors=dids,
        kinds=[r[3] for r in merged],
    )
