"""JSON from untrusted parties (peers, nodes, clients): every bad input is a ``ValueError``.

``json.loads`` raises ``RecursionError`` on deeply nested input (``[[[[...`` a few
thousand deep fits in a small body), which callers catching ``ValueError`` for bad
JSON would let escape as a crash. :func:`loads` reports it like any other bad JSON.
Huge numbers are bounded by the interpreter's int-string limit (CVE-2020-10735),
which also surfaces as a ``ValueError``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: bytes | bytearray | str) -> Any:
    """Parse JSON; raise ``ValueError`` (never ``RecursionError``) if it is not valid."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
