"""A stdin/stdout harness around ``protocol.negentropy``, for interop testing.

It speaks the line protocol of the reference implementation's test harnesses
(hoytech/negentropy ``test/``), so it can be paired with any of them, or with our
nostr-tools harness (``tests/interop/negentropy_harness.mjs``), by a driver that copies
``msg`` lines from one to the other:

    in:  ``item,<timestamp>,<hex id>`` | ``seal`` | ``initiate`` | ``msg,<hex>``
    out: ``msg,<hex>`` | ``have,<hex id>`` | ``need,<hex id>`` | ``done``

The client is the side that receives ``initiate``. ``FRAMESIZELIMIT`` in the
environment sets the frame size limit (default 0, unlimited). Any error ends the
process with status 1 and one line on stderr. Run it as
``python -m tests.interop.negentropy_harness --role client|server`` from the
repository root: it is test tooling, not part of the installed client.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from protocol.errors import NegentropyError
from protocol.negentropy import Negentropy, NegentropyStorage

__all__ = ["main"]

ROLES = ("client", "server")


class HarnessError(Exception):
    """A bad input line (not a protocol error: those are NegentropyError)."""


def _run(role: str, frame_size_limit: int, stdin: TextIO, stdout: TextIO) -> None:
    storage = NegentropyStorage()
    engine: Negentropy | None = None
    for raw in stdin:
        line = raw.strip()
        if not line:
            continue
        fields = line.split(",")
        command = fields[0]
        out: list[str] = []
        if command == "item":
            if len(fields) != 3:
                raise HarnessError("wrong number of fields")
            try:
                timestamp = int(fields[1])
                item_id = bytes.fromhex(fields[2])
            except ValueError as exc:
                raise HarnessError(f"bad item line: {line!r}") from exc
            storage.insert(timestamp, item_id)
        elif command == "seal":
            storage.seal()
            engine = Negentropy(storage, frame_size_limit)
        elif command == "initiate":
            if role != "client":
                raise HarnessError("only the client initiates")
            if engine is None:
                raise HarnessError("initiate before seal")
            out.append("msg," + engine.initiate().hex())
        elif command == "msg":
            if engine is None:
                raise HarnessError("msg before seal")
            try:
                query = bytes.fromhex(fields[1] if len(fields) > 1 else "")
            except ValueError as exc:
                raise HarnessError("bad hex in msg line") from exc
            if role == "client":
                reply, have, need = engine.reconcile_client(query)
                out.extend("have," + item_id.hex() for item_id in have)
                out.extend("need," + item_id.hex() for item_id in need)
                out.append("done" if reply is None else "msg," + reply.hex())
            else:
                out.append("msg," + engine.reconcile(query).hex())
        else:
            raise HarnessError(f"unknown command: {command!r}")
        if out:
            stdout.write("\n".join(out) + "\n")
            # The peer harness waits on every answer: never leave one in a buffer.
            stdout.flush()


def main(role: str) -> int:
    """Run the harness as ``role`` ("client" or "server") on stdin/stdout; exit status."""
    if role not in ROLES:
        print(f"negentropy harness: role must be client or server, not {role!r}", file=sys.stderr)
        return 2
    try:
        frame_size_limit = int(os.environ.get("FRAMESIZELIMIT", "0") or "0")
    except ValueError:
        print("negentropy harness: FRAMESIZELIMIT must be an integer", file=sys.stderr)
        return 2
    try:
        _run(role, frame_size_limit, sys.stdin, sys.stdout)
    except (HarnessError, NegentropyError) as exc:
        sys.stdout.flush()
        print(f"negentropy harness: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m tests.interop.negentropy_harness`
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, required=True)
    raise SystemExit(main(parser.parse_args().role))
