"""A rotatable identity (spec 0008) for node tests: its keys, and helpers that sign its
events the way an owner's client or a thief would.

Keys come from fixed seeds (``sha256("rotatable:" + name + ":" + role)``) so scenarios
are reproducible; nothing here checks entitlement: a test signs whatever it wants,
and the node under test decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from protocol.events import Event, sign_event_v2, sign_genesis
from protocol.identity import Identity, next_key_commitment

__all__ = ["Rotatable", "key"]

T0 = 1_700_000_000_000


def key(name: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"rotatable:{name}".encode()).digest())


@dataclass
class Rotatable:
    """One did:murmur: genesis keys ``S0`` (signing), ``N0`` (next), ``R0`` (recovery)."""

    name: str
    ts: int = T0
    genesis: Event = field(init=False)

    def __post_init__(self) -> None:
        self.genesis = sign_genesis(
            self.k("S0"),
            next_key=self.k("N0").public.raw,
            recovery=[self.k("R0").public.raw],
            ts=self.ts,
        )

    def k(self, role: str) -> Identity:
        return key(f"{self.name}:{role}")

    @property
    def did(self) -> str:
        return self.genesis.author

    def sign(
        self,
        signer: str,
        kind: str,
        body: dict[str, Any],
        *,
        after: Event,
        kev: Event | bytes,
        seq: int | None = None,
        ts: int | None = None,
    ) -> Event:
        """Sign ``kind`` with the key named ``signer``, chained after ``after``."""
        self.ts += 1
        return sign_event_v2(
            self.k(signer),
            author=self.did,
            kind=kind,
            body=body,
            seq=after.seq + 1 if seq is None else seq,
            prev=after.id,
            kev=kev if isinstance(kev, bytes) else kev.id,
            ts=self.ts if ts is None else ts,
        )

    def rotate(self, signer: str, new_signing: str, new_next: str, **kw: Any) -> Event:
        """A ``rotate`` signed by ``signer`` (the owner's: the next key at ``kev``)."""
        body = {
            "signing": self.k(new_signing).public.raw,
            "next": next_key_commitment(self.k(new_next).public.raw),
        }
        return self.sign(signer, "rotate", body, **kw)

    def recover(self, signer: str, new_signing: str, new_next: str, **kw: Any) -> Event:
        body = {
            "signing": self.k(new_signing).public.raw,
            "next": next_key_commitment(self.k(new_next).public.raw),
        }
        return self.sign(signer, "recover", body, **kw)
